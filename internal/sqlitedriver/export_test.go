package sqlitedriver

import (
	"database/sql"
	"time"
)

// NewCheckpointerEvery is NewCheckpointer with its intervals: the
// shortest time between checkpoints, and the time after which it
// checkpoints without being told of a write.
func NewCheckpointerEvery(db *sql.DB, onErr func(error), every, idle time.Duration) *Checkpointer {
	return newCheckpointer(db, onErr, every, idle)
}
