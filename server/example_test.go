package server_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/sqlitestore"
	"github.com/tethersync/tether/wire"
)

// Customer is a synced entity: table "customers", priority 1.
type Customer struct {
	entity.Meta `sync:"customers,1"`
	ID          string  `db:"id"`
	Name        string  `db:"name"`
	Email       *string `db:"email"`
}

// Order references a customer.
type Order struct {
	entity.Meta `sync:"orders,2"`
	ID          string  `db:"id"`
	CustomerID  string  `db:"customer_id,ref=customers"`
	Total       float64 `db:"total"`
}

// A server over the embedded SQLite store, with static tokens, served on
// loopback. Every request but health needs a bearer token.
func ExampleNew() {
	dir, err := os.MkdirTemp("", "tether-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	reg := entity.NewRegistry()
	if err := reg.Register(Customer{}, Order{}); err != nil {
		log.Fatal(err)
	}
	store, err := sqlitestore.Open(filepath.Join(dir, "server.db"), reg.Schema(), sqlitestore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	srv, err := server.New(store, server.Options{
		Auth: server.StaticTokens{"token-1": {Tenant: "acme", User: "ada"}},
	})
	if err != nil {
		log.Fatal(err) // options naming an unknown table or strategy
	}
	defer srv.Close()
	hs := httptest.NewServer(srv) // or http.ListenAndServe(":8080", srv)
	defer hs.Close()

	for _, path := range []string{"/v1/health", "/v1/changes"} {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	// Output:
	// /v1/health 200 {"status":"ok"}
	// /v1/changes 401 {"error":{"code":"unauthorized","message":"missing bearer token: unauthorized"}}
}

// Conflict rules per table: a strategy, a delete policy, or a Go function
// that merges both rows.
func ExampleOptions_conflicts() {
	opts := server.Options{
		Auth:       server.StaticTokens{"token-1": {Tenant: "acme", User: "ada"}},
		Strategies: map[string]server.Strategy{"orders": server.ServerWins},
		Deletes:    map[string]server.DeletePolicy{"orders": server.DeleteAlwaysWins},
		Resolvers: map[string]server.ResolveFunc{
			"customers": func(ctx context.Context, c server.Conflict) (server.Resolution, error) {
				merged := maps.Clone(c.Server.Values)      // keep the server's row...
				merged["email"] = c.Pushed.Values["email"] // ...but the device's email
				return server.Resolution{Winner: wire.WinnerMerged, Values: merged}, nil
			},
		},
	}
	reg := entity.NewRegistry()
	if err := reg.Register(Customer{}, Order{}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(opts.Check(reg.Schema()))
	opts.Strategies["invoices"] = server.ClientWins
	fmt.Println(opts.Check(reg.Schema()))
	// Output:
	// <nil>
	// strategy for unknown table "invoices"
}
