package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/localdb"
)

// Item is the benchmark's entity: about 200 bytes of row data.
type Item struct {
	entity.Meta `sync:"items,1"`
	ID          string    `db:"id"`
	Name        string    `db:"name"`
	Category    string    `db:"category"`
	Note        *string   `db:"note"`
	Price       float64   `db:"price"`
	Quantity    int64     `db:"quantity"`
	UpdatedAt   time.Time `db:"updated_at"`
	Tags        []string  `db:"tags,json"`
}

var (
	categories = []string{"hardware", "software", "services", "supplies", "furniture"}
	tagWords   = []string{"blue", "large", "fragile", "imported", "seasonal", "discounted", "new"}
)

// newItem returns a random item with a fresh UUIDv7 id.
func newItem(r *rand.Rand, i int) Item {
	it := Item{
		ID:        uuid.Must(uuid.NewV7()).String(),
		Name:      fmt.Sprintf("Item number %d of the catalogue", i),
		Category:  categories[r.IntN(len(categories))],
		Price:     float64(r.IntN(1000000)) / 100,
		Quantity:  int64(r.IntN(500)),
		UpdatedAt: time.Unix(1_700_000_000+int64(r.IntN(50_000_000)), int64(r.IntN(1e9))).UTC(),
		Tags:      []string{tagWords[r.IntN(len(tagWords))], tagWords[r.IntN(len(tagWords))]},
	}
	if r.IntN(2) == 0 {
		note := fmt.Sprintf("restock when below %d units", r.IntN(50))
		it.Note = &note
	}
	return it
}

func registry() *entity.Registry {
	reg := entity.NewRegistry()
	if err := reg.Register(Item{}); err != nil {
		panic(err)
	}
	return reg
}

// fill saves n new items into db, in transactions of 10,000 rows.
func fill(ctx context.Context, db *localdb.DB, n int, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 1))
	for done := 0; done < n; {
		k := min(10_000, n-done)
		err := db.Update(ctx, func(tx *localdb.Tx) error {
			for i := range k {
				it := newItem(r, done+i)
				if err := tx.Save(ctx, &it); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("fill: %w", err)
		}
		done += k
	}
	return nil
}

// touch changes n existing items of db.
func touch(ctx context.Context, db *localdb.DB, n int, round int) error {
	items, err := localdb.Query[Item](ctx, db, "id IN (SELECT id FROM items ORDER BY id LIMIT ? OFFSET ?)", n, round*n)
	if err != nil {
		return err
	}
	return db.Update(ctx, func(tx *localdb.Tx) error {
		for i := range items {
			items[i].Quantity++
			if err := tx.Save(ctx, &items[i]); err != nil {
				return err
			}
		}
		return nil
	})
}
