// Command tether-admin is an operator's tool over a tether server database
// and over device database files: a tenant's devices with their pull
// position and lag, open push sessions, the app schemas devices registered
// with, the scope keys a user's devices hold, and, offline, what a device
// file holds (tenant, device id, cursor, pending rows, conflict log).
//
//	tether-admin devices  -db server.db -tenant acme
//	tether-admin devices  -db postgres://tether@db/tether -tenant acme -unseen 168h -json
//	tether-admin sessions -db server.db -tenant acme
//	tether-admin schema   -db server.db -tenant acme
//	tether-admin keys     -db server.db -tenant acme -user ada
//	tether-admin device   laptop.db
//
// -db is what tether-server's -db is: a SQLite path, a postgres:// URL or
// a mysql:// URL. Every command prints aligned tables, or JSON with -json,
// and describes its flags with -help. The commands are those of package
// server/admin, which an app that embeds the server can run from its own
// binary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tethersync/tether/server/admin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := admin.Run(ctx, os.Args[1:], admin.Options{})
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
	case errors.Is(err, admin.ErrUsage):
		fmt.Fprintln(os.Stderr, "tether-admin:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "tether-admin:", err)
		os.Exit(1)
	}
}
