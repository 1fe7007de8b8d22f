package sqlitestore_test

import (
	"fmt"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/sqlitestore"
)

type Note struct {
	entity.Meta `sync:"notes,1"`
	ID          string `db:"id"`
	Text        string `db:"text"`
}

// A server over the embedded store: open it on a file with the app's
// schema, and serve it.
func ExampleOpen() {
	reg := entity.NewRegistry()
	if err := reg.Register(Note{}); err != nil {
		log.Fatal(err)
	}
	dir, _ := os.MkdirTemp("", "tether-example-")
	defer os.RemoveAll(dir)
	store, err := sqlitestore.Open(filepath.Join(dir, "server.db"), reg.Schema(), sqlitestore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	srv, err := server.New(store, server.Options{Auth: server.StaticTokens{"token-1": {Tenant: "acme", User: "ada"}}})
	if err != nil {
		log.Fatal(err)
	}
	hs := httptest.NewServer(srv) // or http.ListenAndServe(":8080", srv)
	defer hs.Close()
	var tables int
	err = store.DB().QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'notes'`).Scan(&tables)
	fmt.Println(tables, err)
	// Output: 1 <nil>
}
