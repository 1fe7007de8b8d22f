package pgstore_test

import (
	"context"
	"log"
	"net/http"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/pgstore"
)

// Note is a synced entity.
type Note struct {
	entity.Meta `sync:"notes,1"`
	ID          string `db:"id"`
	Text        string `db:"text"`
}

// A server process over PostgreSQL. Run as many as you like on the same
// database, behind a load balancer: they keep no state of their own.
// (Compiled, not run: it needs a database.)
func ExampleOpen() {
	ctx := context.Background()
	reg := entity.NewRegistry()
	if err := reg.Register(Note{}); err != nil {
		log.Fatal(err)
	}
	// Open creates or upgrades the tables; pool size and timeouts come
	// from the URL (pool_max_conns, connect_timeout).
	store, err := pgstore.Open(ctx, "postgres://tether:secret@db.internal:5432/tether?sslmode=verify-full",
		reg.Schema(), pgstore.Options{})
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
