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

// Registry returns the registry the database was opened with: the schema
// a device registers with the server.
func (s *Syncer) Registry() *entity.Registry { return s.db.reg }
