package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tethersync/tether/internal/dbserver"
)

// The other stores of the push scenario: issue 24 sets push targets on
// PostgreSQL and MySQL too, so the default run (on SQLite) also pushes the
// push scenario's largest row count into a PostgreSQL and a MariaDB store,
// each a throwaway server started from the machine's binaries, one row
// each, or a row saying it was skipped when the binaries are missing.
// -other-stores=false turns it off.

// otherStore is a store the push scenario also measures.
type otherStore struct {
	store string // its -store name
	kind  dbserver.Kind
	name  string // in the table
}

var otherStores = []otherStore{
	{"postgres", dbserver.Postgres, "PostgreSQL"},
	{"mysql", dbserver.MariaDB, "MySQL (MariaDB)"},
}

// runOtherStores pushes into the stores of otherStores but -store's.
func (b *bench) runOtherStores(ctx context.Context, t *table, log func(string)) error {
	if !b.cfg.scenarios["push"] || !b.cfg.otherStores {
		return nil
	}
	n := slices.Max(b.cfg.rows)
	if slices.Contains(b.cfg.rows, 100_000) {
		n = 100_000 // the targets' row count
	}
	for _, o := range otherStores {
		if o.store == b.cfg.store {
			continue // the push rows above are this store's
		}
		if err := b.runOtherStore(ctx, t, log, o, n); err != nil {
			return err
		}
	}
	return nil
}

// runOtherStore pushes n rows into store o, or adds a row saying why not.
func (b *bench) runOtherStore(ctx context.Context, t *table, log func(string), o otherStore, n int) error {
	label := "push into an empty server, " + o.name + " store"
	goal := pushGoals[o.store]
	target := "≥ " + thousands(int(goal)) + " rows/s"
	if n != 100_000 {
		target = ""
	}
	log(fmt.Sprintf("push, %d rows, into a %s store", n, o.name))
	db, err := dbserver.Start(o.kind)
	if errors.Is(err, dbserver.ErrNoBinaries) {
		t.add(label, n, "skipped: no "+o.store+" binaries", target, nil)
		return nil
	}
	if err != nil {
		return fmt.Errorf("push into a %s store: %w", o.name, err)
	}
	defer db.Stop()
	d, err := b.measurePushInto(ctx, db, n)
	if err != nil {
		return fmt.Errorf("push into a %s store: %w", o.name, err)
	}
	b.addFigure(t, "push "+o.store, n, d, goal/b.base[n])
	result := fmt.Sprintf("%s, %.2f × baseline", perSec(n, d), rate(n, d)/b.base[n])
	addTarget(t, label, n, result, target, target != "", rate(n, d) >= goal)
	return nil
}

// measurePushInto is measurePush with the servers' stores on db, and
// without keeping a server for the pull scenarios.
func (b *bench) measurePushInto(ctx context.Context, db *dbserver.Server, n int) (time.Duration, error) {
	saved := b.db
	b.db = db
	defer func() { b.db = saved }()
	return b.timePushes(ctx, n, false)
}
