package pgstore

import (
	"context"
	"database/sql"
	"encoding/json"

	"github.com/tethersync/tether/server/sqlstore"
)

// notifyChannel is the PostgreSQL channel of commit notifications.
const notifyChannel = "tether_changes"

// Notify implements sqlstore.CrossProcess with pg_notify, delivered when
// the transaction commits.
func (*dialect) Notify(ctx context.Context, tx *sql.Tx, n sqlstore.Notice) error {
	payload, _ := json.Marshal(n)
	_, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, string(payload))
	return err
}

// Listen implements sqlstore.CrossProcess: LISTEN on one connection of the
// pool, until it fails; the store logs the error and calls Listen again.
func (d *dialect) Listen(ctx context.Context, ready func(), deliver func(sqlstore.Notice)) error {
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	ready()
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			conn.Conn().Close(context.Background()) // never return a listening connection to the pool
			return err
		}
		var msg sqlstore.Notice
		if json.Unmarshal([]byte(n.Payload), &msg) == nil {
			deliver(msg)
		}
	}
}
