package mysqlstore

import (
	"context"
	"database/sql"
	"time"

	"github.com/tethersync/tether/server/sqlstore"
)

// PollInterval is how often a store that has event subscribers reads the
// tenants' versions to learn of other processes' commits.
const PollInterval = 200 * time.Millisecond

// Notify implements sqlstore.CrossProcess: the commit's device goes into
// the tenant's row, whose version NextVersion already moved.
func (*dialect) Notify(ctx context.Context, tx *sql.Tx, n sqlstore.Notice) error {
	_, err := tx.ExecContext(ctx, `UPDATE _tether_tenants SET device = ? WHERE tenant = ?`, n.Device, n.Tenant)
	return err
}

// Listen implements sqlstore.CrossProcess by polling the tenants'
// versions every PollInterval. Commits between two polls are coalesced;
// when a tenant moved by more than one version, the event names no device,
// so that no device takes another's commit for its own.
func (d *dialect) Listen(ctx context.Context, ready func(), deliver func(sqlstore.Notice)) error {
	seen := map[string]int64{}
	poll := func(first bool) error {
		rows, err := d.db.QueryContext(ctx, `SELECT tenant, version, device FROM _tether_tenants`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var n sqlstore.Notice
			if err := rows.Scan(&n.Tenant, &n.Version, &n.Device); err != nil {
				return err
			}
			last, known := seen[n.Tenant]
			seen[n.Tenant] = n.Version
			if first || (known && n.Version == last) {
				continue
			}
			if !known || n.Version > last+1 {
				n.Device = ""
			}
			deliver(n)
		}
		return rows.Err()
	}
	if err := poll(true); err != nil {
		return err
	}
	ready()
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if err := poll(false); err != nil {
			return err
		}
	}
}
