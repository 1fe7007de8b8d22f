package mysqlstore_test

import (
	"context"
	"log"
	"net/http"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/mysqlstore"
)

// Note is a synced entity.
type Note struct {
	entity.Meta `sync:"notes,1"`
	ID          string `db:"id"`
	Text        string `db:"text"`
}

// A server process over MySQL 8 or MariaDB 10.11. Run as many as you like
// on the same database, behind a load balancer: they keep no state of
// their own.
// (Compiled, not run: it needs a database.)
func ExampleOpen() {
	ctx := context.Background()
	reg := entity.NewRegistry()
	if err := reg.Register(Note{}); err != nil {
		log.Fatal(err)
	}
	// Create the database first (CHARACTER SET utf8mb4); Open creates or
	// upgrades the tables. The DSN is the driver's: tls, timeouts.
	store, err := mysqlstore.Open(ctx, "tether:secret@tcp(db.internal:3306)/tether?tls=true",
		reg.Schema(), mysqlstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	srv, err := server.New(store, server.Options{Auth: server.StaticTokens{"token-1": {Tenant: "acme", User: "ada"}}})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	log.Fatal(http.ListenAndServe(":8080", srv))
}
