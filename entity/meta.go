package entity

import "time"

// Meta is embedded in every synced struct. Its tag names the table and the
// priority: `sync:"customers,1"`. Tables with a lower priority are pushed and
// applied first, so parents must have a lower priority than their children.
//
// The store fills Meta on every read; the application may read it but its
// writes to Meta are ignored.
type Meta struct {
	// Dirty reports that the row has local changes not yet acknowledged by the server.
	Dirty bool
	// Deleted reports that the row is a tombstone.
	Deleted bool
	// ModifiedAt is the wall-clock time of the last change, local or pulled.
	ModifiedAt time.Time
	// ModifiedBy is the user who made the last change the server accepted.
	ModifiedBy string
	// Version is the server version the row was last synced at; 0 if never synced.
	Version int64
}
