// Command quickstart shows tether end to end: an in-process sync server on
// loopback, two devices with their own SQLite files, offline edits on both
// (one of them a conflict, one a delete), a sync, and proof that both
// devices and the server hold the same rows.
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
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
	ID          string   `db:"id"`
	Name        string   `db:"name"`
	Email       *string  `db:"email"`
	Tags        []string `db:"tags,json"`
}

// Order is a child of Customer: priority 2, so it syncs after its parent.
type Order struct {
	entity.Meta `sync:"orders,2"`
	ID          string    `db:"id"`
	CustomerID  string    `db:"customer_id,ref=customers"`
	Total       float64   `db:"total"`
	PlacedAt    time.Time `db:"placed_at"`
}

func main() {
	if err := run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

// device is one device: its local store and its coordinator.
type device struct {
	name string
	db   *localdb.DB
	co   *coordinator.Coordinator
}

func run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "tether-quickstart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	reg := entity.NewRegistry()
	if err := reg.Register(Customer{}, Order{}); err != nil {
		return err
	}
	store, url, stop, err := startServer(dir, reg)
	if err != nil {
		return err
	}
	defer stop()
	laptop, err := openDevice(ctx, dir, reg, url, "laptop", "token-laptop")
	if err != nil {
		return err
	}
	defer laptop.db.Close()
	phone, err := openDevice(ctx, dir, reg, url, "phone", "token-phone")
	if err != nil {
		return err
	}
	defer phone.db.Close()

	ada, bob, err := firstSync(ctx, laptop, phone)
	if err != nil {
		return err
	}
	if err := offlineEdits(ctx, laptop, phone, ada, bob); err != nil {
		return err
	}
	fmt.Println("\n3. Back online: laptop, phone, laptop sync. Last writer wins the conflict.")
	for _, d := range []*device{laptop, phone, laptop} {
		if err := d.sync(ctx); err != nil {
			return err
		}
	}
	return compare(ctx, store, laptop, phone)
}

// startServer starts the server on loopback: a SQLite store in dir, two
// users of tenant "acme". stop closes it.
func startServer(dir string, reg *entity.Registry) (store *sqlitestore.Store, url string, stop func(), err error) {
	store, err = sqlitestore.Open(filepath.Join(dir, "server.db"), reg.Schema(), sqlitestore.Options{})
	if err != nil {
		return nil, "", nil, err
	}
	srv, err := server.New(store, server.Options{Auth: server.StaticTokens{
		"token-laptop": {Tenant: "acme", User: "ada"},
		"token-phone":  {Tenant: "acme", User: "bob"},
	}})
	if err != nil {
		store.Close()
		return nil, "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		store.Close()
		return nil, "", nil, err
	}
	go http.Serve(ln, srv)
	url = "http://" + ln.Addr().String()
	fmt.Println("server listening on", url)
	return store, url, func() { ln.Close(); srv.Close(); store.Close() }, nil
}

// openDevice opens a device's local store in dir and its coordinator,
// which prints each conflict it learns of.
func openDevice(ctx context.Context, dir string, reg *entity.Registry, url, name, token string) (*device, error) {
	db, err := localdb.Open(ctx, filepath.Join(dir, name+".db"), reg)
	if err != nil {
		return nil, err
	}
	api := client.New(url, client.Options{Token: token})
	co := coordinator.New(db, api, coordinator.Options{
		OnConflict: func(c coordinator.Conflict) {
			fmt.Printf("  %s: conflict on %s %s resolved by %s, local version kept: %v\n",
				name, c.Table, c.ID[:8], c.Strategy, c.LocalWon)
		},
	})
	return &device{name, db, co}, nil
}

// sync runs one SyncNow and prints its report.
func (d *device) sync(ctx context.Context) error {
	rep, err := d.co.SyncNow(ctx)
	if err != nil {
		return fmt.Errorf("%s: sync: %w", d.name, err)
	}
	fmt.Printf("  %s synced: pushed %v, applied %d pulled rows, %d conflicts, %d bytes up, %d down\n",
		d.name, rep.Pushed, rep.Applied, rep.Conflicts, rep.BytesSent, rep.BytesReceived)
	return nil
}

// firstSync: the laptop records two customers and an order in one
// transaction and syncs; the phone syncs.
// It returns the two customers.
func firstSync(ctx context.Context, laptop, phone *device) (ada, bob Customer, err error) {
	fmt.Println("\n1. The laptop records two customers and an order, then syncs; the phone syncs.")
	email := "ada@example.com"
	ada = Customer{Name: "Ada", Email: &email, Tags: []string{"vip"}}
	bob = Customer{Name: "Bob"}
	err = laptop.db.Update(ctx, func(tx *localdb.Tx) error {
		if err := tx.Save(ctx, &ada); err != nil {
			return err
		}
		if err := tx.Save(ctx, &bob); err != nil {
			return err
		}
		return tx.Save(ctx, &Order{CustomerID: ada.ID, Total: 99.5, PlacedAt: time.Now()})
	})
	if err == nil {
		err = laptop.sync(ctx)
	}
	if err == nil {
		err = phone.sync(ctx)
	}
	return ada, bob, err
}

// offlineEdits: both devices edit while offline; both rename Ada (a
// conflict), the phone deletes Bob, the laptop adds Cy.
func offlineEdits(ctx context.Context, laptop, phone *device, ada, bob Customer) error {
	fmt.Println("\n2. Both go offline and edit: both rename Ada (a conflict), the phone deletes Bob,")
	fmt.Println("   the laptop adds Cy.")
	ada.Name = "Ada Lovelace"
	if err := laptop.db.Save(ctx, &ada); err != nil {
		return err
	}
	if err := laptop.db.Save(ctx, &Customer{Name: "Cy"}); err != nil {
		return err
	}
	time.Sleep(5 * time.Millisecond) // the phone's edit is the later one
	var adaOnPhone Customer
	if err := phone.db.Get(ctx, &adaOnPhone, ada.ID); err != nil {
		return err
	}
	adaOnPhone.Name = "Countess Ada"
	if err := phone.db.Save(ctx, &adaOnPhone); err != nil {
		return err
	}
	if err := phone.db.Delete(ctx, &Customer{ID: bob.ID}); err != nil {
		return err
	}
	n, _ := laptop.db.Pending(ctx)
	m, _ := phone.db.Pending(ctx)
	fmt.Printf("  pending changes: laptop %d, phone %d\n", n, m)
	return nil
}

// compare prints what each device and the server hold, and fails unless
// they agree.
func compare(ctx context.Context, store *sqlitestore.Store, laptop, phone *device) error {
	fmt.Println("\n4. What each side holds:")
	lap, err := customers(ctx, laptop.db)
	if err != nil {
		return err
	}
	ph, err := customers(ctx, phone.db)
	if err != nil {
		return err
	}
	sv, err := serverCustomers(store)
	if err != nil {
		return err
	}
	fmt.Println("  laptop:", lap)
	fmt.Println("  phone: ", ph)
	fmt.Println("  server:", sv)
	if lap != ph || ph != sv {
		return fmt.Errorf("devices and server differ")
	}
	fmt.Println("\nBoth devices and the server hold the same rows.")
	return nil
}

func customers(ctx context.Context, db *localdb.DB) (string, error) {
	list, err := localdb.Query[Customer](ctx, db, "")
	if err != nil {
		return "", err
	}
	var names []string
	for _, c := range list {
		names = append(names, c.Name)
	}
	sort.Strings(names)
	return strings.Join(names, ", "), nil
}

func serverCustomers(store *sqlitestore.Store) (string, error) {
	rows, err := store.DB().Query(`SELECT name FROM customers WHERE _tenant = 'acme' AND _deleted = 0 ORDER BY name`)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return "", err
		}
		names = append(names, n)
	}
	return strings.Join(names, ", "), rows.Err()
}
