package localdb_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/localdb"
)

// Customer is a synced entity: table "customers", priority 1.
type Customer struct {
	entity.Meta `sync:"customers,1"`
	ID          string  `db:"id"`
	Name        string  `db:"name"`
	Email       *string `db:"email"`
}

// Open a device's database, write and read rows, and count what waits to
// be pushed. Every write works offline; the coordinator syncs it later.
func ExampleOpen() {
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
	// Open creates the file and its tables, or adds what a grown struct needs.
	db, err := localdb.Open(ctx, filepath.Join(dir, "app.db"), reg)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	ada := Customer{Name: "Ada"}
	if err := db.Save(ctx, &ada); err != nil { // sets ada.ID (a UUIDv7), marks the row dirty
		log.Fatal(err)
	}
	if err := db.Save(ctx, &Customer{Name: "Bob"}); err != nil {
		log.Fatal(err)
	}
	var got Customer
	if err := db.Get(ctx, &got, ada.ID); err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.Name, "dirty:", got.Dirty)

	list, err := localdb.Query[Customer](ctx, db, "name LIKE ?", "B%")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("names starting with B:", len(list))

	// A delete keeps a tombstone, so that the deletion syncs too.
	if err := db.Delete(ctx, &got); err != nil {
		log.Fatal(err)
	}
	err = db.Get(ctx, &got, ada.ID)
	fmt.Println("after delete:", errors.Is(err, localdb.ErrNotFound))

	n, err := db.Pending(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("pending:", n)
	// Output:
	// Ada dirty: true
	// names starting with B: 1
	// after delete: true
	// pending: 2
}

// Update runs several writes in one transaction: all or none of them.
func ExampleDB_Update() {
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
	db, err := localdb.Open(ctx, filepath.Join(dir, "app.db"), reg)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	err = db.Update(ctx, func(tx *localdb.Tx) error {
		for _, name := range []string{"Ada", "Bob", "Cy"} {
			if err := tx.Save(ctx, &Customer{Name: name}); err != nil {
				return err // rolls back every save of this transaction
			}
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	// Plain SQL works on the same tables; filter out tombstones yourself.
	var count int
	err = db.SQL().QueryRowContext(ctx, `SELECT count(*) FROM customers WHERE _deleted = 0`).Scan(&count)
	fmt.Println(count, err)
	// Output: 3 <nil>
}
