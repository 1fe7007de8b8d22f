package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/sqlitestore"
)

// Customer is a synced entity: table "customers", priority 1.
type Customer struct {
	entity.Meta `sync:"customers,1"`
	ID          string `db:"id"`
	Name        string `db:"name"`
}

// Two devices sync through a server: a row saved offline on the laptop
// reaches the phone after each calls SyncNow.
func ExampleCoordinator_SyncNow() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "tether-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	reg := entity.NewRegistry()
	if err := reg.Register(Customer{}); err != nil {
		log.Fatal(err)
	}

	// The server: the embedded SQLite store, one token per user of tenant "acme".
	store, err := sqlitestore.Open(filepath.Join(dir, "server.db"), reg.Schema(), sqlitestore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	srv, err := server.New(store, server.Options{Auth: server.StaticTokens{
		"token-laptop": {Tenant: "acme", User: "ada"},
		"token-phone":  {Tenant: "acme", User: "bob"},
	}})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv) // or http.ListenAndServe(":8080", srv)
	defer hs.Close()

	// A device: its own SQLite file, a client with its token, a coordinator.
	device := func(name, token string) (*localdb.DB, *coordinator.Coordinator) {
		db, err := localdb.Open(ctx, filepath.Join(dir, name+".db"), reg)
		if err != nil {
			log.Fatal(err)
		}
		api := client.New(hs.URL, client.Options{Token: token})
		return db, coordinator.New(db, api, coordinator.Options{})
	}
	laptopDB, laptop := device("laptop", "token-laptop")
	defer laptopDB.Close()
	defer laptop.Close()
	phoneDB, phone := device("phone", "token-phone")
	defer phoneDB.Close()
	defer phone.Close()

	ada := Customer{Name: "Ada"}
	if err := laptopDB.Save(ctx, &ada); err != nil { // offline: the row waits, dirty
		log.Fatal(err)
	}
	rep, err := laptop.SyncNow(ctx)
	if errors.Is(err, coordinator.ErrOffline) {
		log.Fatal("no server: try again later") // a "Sync now" button shows this
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("laptop pushed:", rep.Pushed)

	rep, err = phone.SyncNow(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("phone pulled:", rep.Pulled)
	var got Customer
	if err := phoneDB.Get(ctx, &got, ada.ID); err != nil {
		log.Fatal(err)
	}
	fmt.Println("on the phone:", got.Name, "written by", got.ModifiedBy)
	// Output:
	// laptop pushed: map[customers:1]
	// phone pulled: map[customers:1]
	// on the phone: Ada written by ada
}

// An unattended device: sync every five minutes, and soon after another
// device's changes commit (server-sent events), until ctx ends. The
// callbacks feed a status page. (Compiled, not run: it runs until stopped.)
func ExampleCoordinator_Live() {
	ctx := context.Background()
	reg := entity.NewRegistry()
	if err := reg.Register(Customer{}); err != nil {
		log.Fatal(err)
	}
	db, err := localdb.Open(ctx, "app.db", reg)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	api := client.New("https://sync.example.com", client.Options{Token: os.Getenv("TETHER_TOKEN")})
	co := coordinator.New(db, api, coordinator.Options{
		OnProgress: func(p coordinator.Progress) { log.Printf("%s %s %d/%d", p.Phase, p.Table, p.Done, p.Total) },
		OnConflict: func(c coordinator.Conflict) { log.Printf("conflict on %s %s: %s", c.Table, c.ID, c.Outcome) },
		OnSync:     func(r coordinator.Report, err error) { log.Printf("synced: %v %v", r.Pushed, err) },
	})
	defer co.Close()
	err = co.Live(ctx, 5*time.Minute) // or co.Run(ctx, 5*time.Minute): the interval only
	log.Print(err)
}
