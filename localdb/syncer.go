package localdb

import "github.com/tethersync/tether/entity"

// Syncer is the sync engines' view of a DB: what the push and pull engines
// (push.Store, pull.Store) and the coordinator need of the local store:
// dirty rows and sent batches, applied pages and the pull cursor, the
// tenant binding and registration, rebuilds from a snapshot, digests. An app
// reads and writes its data through DB and does not need it.
//
// A Syncer is safe for concurrent use; its methods return ErrClosed after
// the DB is closed.
type Syncer struct {
	db *DB
}

// Syncer returns the engines' view of db.
func (db *DB) Syncer() *Syncer { return &Syncer{db: db} }

// DeviceID returns the id of the device, as DB.DeviceID does.
func (s *Syncer) DeviceID() string { return s.db.device }

// DeviceKey returns the device's key: the secret that proves to the server
// that a request naming DeviceID comes from this device (sent in
// wire.HeaderDeviceKey with every such request; the device's first
// registration records it, and the server refuses any other key for the
// device with wire.ErrDeviceKey). The database makes it with its device id,
// from 32 random bytes, and keeps it for good; a database made before
// device keys gets one at its next open.
//
// It is a secret: show it to no one, log it nowhere. It is the sync
// engine's, not the app's (an app names its device with DB.DeviceID). A
// copy of the database file is the same device, key included: two copies
// syncing at once are one device to the server, as they always were.
func (s *Syncer) DeviceKey() string { return s.db.key }

// Registry returns the registry the database was opened with: the schema
// a device registers with the server.
func (s *Syncer) Registry() *entity.Registry { return s.db.reg }
