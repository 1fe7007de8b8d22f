package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/sqlitestore"
	"github.com/tethersync/tether/wire"
)

// Note is a synced entity.
type Note struct {
	entity.Meta `sync:"notes,1"`
	ID          string `db:"id"`
	Text        string `db:"text"`
}

// A client for a server on loopback. Apps hand it to coordinator.New and
// rarely call it themselves; its errors wrap the wire sentinels, so
// errors.Is works the same on both sides.
func ExampleNew() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "tether-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	reg := entity.NewRegistry()
	if err := reg.Register(Note{}); err != nil {
		log.Fatal(err)
	}
	store, err := sqlitestore.Open(filepath.Join(dir, "server.db"), reg.Schema(), sqlitestore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	srv, err := server.New(store, server.Options{Auth: server.StaticTokens{"token-1": {Tenant: "acme", User: "ada"}}})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv)
	defer hs.Close()

	api := client.New(hs.URL, client.Options{Token: "token-1"})
	fmt.Println("health:", api.Health(ctx))

	wrong := client.New(hs.URL, client.Options{Token: "not-a-token"})
	_, err = wrong.Changes(ctx, "", "", 100, nil)
	fmt.Println("unauthorized:", errors.Is(err, wire.ErrUnauthorized), "transient:", client.Transient(err))
	// Output:
	// health: <nil>
	// unauthorized: true transient: false
}

// Tokens that expire: a TokenSource is asked for a token before the first
// request and again, once, when the server answers 401.
func ExampleTokenFunc() {
	fresh := func(ctx context.Context) (string, error) {
		return "a token from your identity provider", nil // must return a new token, not the one refused
	}
	api := client.New("https://sync.example.com", client.Options{TokenSource: client.TokenFunc(fresh)})
	_ = api // give it to coordinator.New
}
