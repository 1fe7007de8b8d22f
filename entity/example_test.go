package entity_test

import (
	"fmt"
	"log"
	"time"

	"github.com/tethersync/tether/entity"
)

// Customer is a synced entity: table "customers", priority 1.
type Customer struct {
	entity.Meta `sync:"customers,1"` // table, priority: lower syncs first
	ID          string               `db:"id"`        // a UUIDv7 is generated when empty
	Name        string               `db:"name"`      // text
	Email       *string              `db:"email"`     // pointer = nullable
	Tags        []string             `db:"tags,json"` // stored as JSON text
}

// Order references a customer, so it syncs after customers (priority 2).
type Order struct {
	entity.Meta `sync:"orders,2"`
	ID          string    `db:"id"`
	CustomerID  string    `db:"customer_id,ref=customers"` // a foreign key on devices
	Total       float64   `db:"total"`
	PlacedAt    time.Time `db:"placed_at"` // UTC, nanoseconds
}

// Declare structs, register them, and read the schema derived from them:
// what devices build their tables from and what the server loads.
func ExampleRegistry_Register() {
	reg := entity.NewRegistry()
	if err := reg.Register(Customer{}, Order{}); err != nil {
		log.Fatal(err) // every invalid declaration is an error naming the field
	}
	for _, t := range reg.Schema().Tables {
		fmt.Printf("%s (priority %d)\n", t.Name, t.Priority)
		for _, c := range t.Columns {
			fmt.Printf("  %s %s", c.Name, c.Kind)
			if c.Nullable {
				fmt.Print(" nullable")
			}
			if c.Ref != "" {
				fmt.Print(" references ", c.Ref)
			}
			fmt.Println()
		}
	}
	// Output:
	// customers (priority 1)
	//   id text
	//   name text
	//   email text nullable
	//   tags json nullable
	// orders (priority 2)
	//   id text
	//   customer_id text references customers
	//   total real
	//   placed_at time
}

// An invalid declaration is refused with an error naming the field.
func ExampleRegistry_Register_invalid() {
	type Bad struct {
		entity.Meta `sync:"bad,1"`
		ID          string   `db:"id"`
		Ch          chan int `db:"ch"`
	}
	err := entity.NewRegistry().Register(Bad{})
	fmt.Println(err)
	// Output: entity entity_test.Bad field Ch: unsupported type chan int (tag `db:",json"` stores it as JSON)
}
