package admin_test

import (
	"context"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/admin"
	"github.com/tethersync/tether/server/pgstore"
	"github.com/tethersync/tether/server/sqlitestore"
	"github.com/tethersync/tether/server/sqlstore"
)

// Run lists the devices of a tenant, as "tether-admin devices" does.
func ExampleRun() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "tether-admin-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "server.db")
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	store, err := sqlitestore.Open(path, entity.Schema{}, sqlitestore.Options{Now: func() time.Time { return now }})
	if err != nil {
		log.Fatal(err)
	}
	ada := server.Principal{Tenant: "acme", User: "ada"}
	if err := store.RegisterDevice(ctx, ada, server.Registration{Device: "laptop-1"}, server.Limits{}); err != nil {
		log.Fatal(err)
	}
	store.Close()

	err = admin.Run(ctx, []string{"devices", "-db", path, "-tenant", "acme"}, admin.Options{
		Stdout: os.Stdout,
		Now:    func() time.Time { return now.Add(90 * time.Minute) },
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// tenant acme: latest version 0, 1 devices
	// DEVICE    USER  LAST-SEEN            AGO    POSITION  LAG  REVOKED  SCHEMA  KEYS
	// laptop-1  ada   2026-12-07 09:00:00  1h30m  -         0    no       server  -
}

// An app that embeds the server runs the same commands from its own
// binary ("myapp admin devices -db … -tenant acme"), opening its store
// with its own schema. The command closes the store when it is done.
func ExampleOptions() {
	reg := entity.NewRegistry() // the app's entities registered here
	err := admin.Run(context.Background(), os.Args[2:], admin.Options{
		Name: "myapp admin",
		Open: func(ctx context.Context, db string) (*sqlstore.Store, error) {
			return pgstore.Open(ctx, db, reg.Schema(), pgstore.Options{})
		},
	})
	if err != nil {
		log.Fatal(err)
	}
}
