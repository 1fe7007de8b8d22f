package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
)

// The dbsize scenario: how large does the SQLite server database grow
// under a long run of updates and deletes, the way the server runs it
// (through HTTP, with its own sweep every -dbsize-sweep and nothing done
// by hand)? A device holds -dbsize-rows rows and, -dbsize-rounds times,
// updates a tenth of them, deletes a tenth and inserts as many new, then
// syncs. It runs once with the default retentions (nothing expires within
// the run: every tombstone, committed session and audit entry stays) and
// once with the retentions of committed sessions and audit entries at
// -dbsize-retention, and reports the file
// (database and WAL) after the last sweeps, beside what a manual VACUUM
// would leave.

// dbsizeResult is the server database after one run.
type dbsizeResult struct {
	file, wal, vacuumed int64 // bytes of the database file, its WAL, and a VACUUM INTO copy
	changes             int   // row changes synced
	took                time.Duration
}

// measureDBSize runs the dbsize scenario once, with the retentions of
// committed sessions and audit entries at retain, or the defaults when
// retain is 0.
func (b *bench) measureDBSize(ctx context.Context, retain time.Duration) (dbsizeResult, error) {
	path := b.path("dbsize-server")
	lim := server.Limits{}
	if retain > 0 {
		// Committed sessions and audit entries; tombstones go once the
		// device has pulled past them, whatever DeviceActivity says, and
		// the device's registration stays (it syncs all along).
		lim = server.Limits{SessionRetention: retain, AuditRetention: retain}
	}
	store, err := b.openStore(path)
	srv, err := startServerWith(store, err, server.Options{Limits: lim, SweepInterval: b.cfg.dbsizeSweep})
	if err != nil {
		return dbsizeResult{}, err
	}
	closed := false
	defer func() {
		if !closed {
			srv.Close()
		}
	}()
	d, err := openDevice(ctx, b.path("dbsize-device"), srv.URL, b.reg, deviceOptions{batch: b.cfg.batch})
	if err != nil {
		return dbsizeResult{}, err
	}
	defer d.Close()
	n := b.cfg.dbsizeRows
	if err := fill(ctx, d.db, n, 7); err != nil {
		return dbsizeResult{}, err
	}
	if _, err := d.co.SyncNow(ctx); err != nil {
		return dbsizeResult{}, fmt.Errorf("first sync: %w", err)
	}
	r := rand.New(rand.NewPCG(uint64(n), 5))
	res := dbsizeResult{}
	start := time.Now()
	for round := range b.cfg.dbsizeRounds {
		changed, err := churn(ctx, d.db, r, n/10, n+round*n)
		if err != nil {
			return dbsizeResult{}, fmt.Errorf("round %d: %w", round+1, err)
		}
		rep, err := d.co.SyncNow(ctx)
		if err != nil {
			return dbsizeResult{}, fmt.Errorf("round %d: sync: %w", round+1, err)
		}
		if rep.Pushed["items"] != changed {
			return dbsizeResult{}, fmt.Errorf("round %d: pushed %d rows, want %d", round+1, rep.Pushed["items"], changed)
		}
		res.changes += changed
	}
	res.took = time.Since(start)
	// The retentions pass, and the sweep runs a few more times.
	if err := pause(ctx, retain+3*b.cfg.dbsizeSweep); err != nil {
		return dbsizeResult{}, err
	}
	closed = true
	if err := srv.Close(); err != nil { // a clean close checkpoints the WAL
		return dbsizeResult{}, err
	}
	return res, sizes(ctx, path, &res)
}

// churn updates k rows of db, deletes k and saves k new ones (numbered
// from next), and returns the rows it changed.
func churn(ctx context.Context, db *localdb.DB, r *rand.Rand, k, next int) (int, error) {
	items, err := localdb.Query[Item](ctx, db, `id IN (SELECT id FROM items WHERE "_deleted" = 0 ORDER BY random() LIMIT ?)`, 2*k)
	if err != nil {
		return 0, err
	}
	if len(items) < 2*k {
		return 0, fmt.Errorf("%d rows on the device, want at least %d", len(items), 2*k)
	}
	err = db.Update(ctx, func(tx *localdb.Tx) error {
		for i := range items {
			if i < k {
				items[i].Quantity++
				if err := tx.Save(ctx, &items[i]); err != nil {
					return err
				}
				continue
			}
			if err := tx.Delete(ctx, &items[i]); err != nil {
				return err
			}
			it := newItem(r, next+i)
			if err := tx.Save(ctx, &it); err != nil {
				return err
			}
		}
		return nil
	})
	return 3 * k, err
}

// sizes fills the file sizes of res from the closed database at path.
func sizes(ctx context.Context, path string, res *dbsizeResult) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	res.file = st.Size()
	if st, err := os.Stat(path + "-wal"); err == nil {
		res.wal = st.Size()
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	into := path + ".vacuumed"
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, into); err != nil {
		return fmt.Errorf("vacuum into: %w", err)
	}
	defer os.Remove(into)
	st, err = os.Stat(into)
	if err != nil {
		return err
	}
	res.vacuumed = st.Size()
	return nil
}

// runDBSize is the dbsize scenario, on SQLite only.
func (b *bench) runDBSize(ctx context.Context, t *table, log func(string)) error {
	if !b.cfg.scenarios["dbsize"] {
		return nil
	}
	if b.cfg.store != "sqlite" {
		log("dbsize: SQLite only, skipped")
		return nil
	}
	n, rounds := b.cfg.dbsizeRows, b.cfg.dbsizeRounds
	for _, retain := range []time.Duration{0, b.cfg.dbsizeRetention} {
		what := "default retentions"
		if retain > 0 {
			what = "sessions and audit entries kept " + retain.String()
		}
		log(fmt.Sprintf("dbsize: %d rounds of churn on %d rows, %s, sweep every %s", rounds, n, what, b.cfg.dbsizeSweep))
		res, err := b.measureDBSize(ctx, retain)
		if err != nil {
			return fmt.Errorf("dbsize scenario (%s): %w", what, err)
		}
		t.add(fmt.Sprintf("dbsize: SQLite server file after %s row changes in %d syncs (%s), %s, sweep every %s",
			thousands(res.changes), rounds, secs(res.took), what, b.cfg.dbsizeSweep), n,
			fmt.Sprintf("%s + %s WAL (a manual VACUUM: %s)", bytesText(res.file), bytesText(res.wal), bytesText(res.vacuumed)), "", nil)
	}
	return nil
}
