package stores

import (
	"os"
	"testing"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

type note struct {
	entity.Meta `sync:"notes,1"`
	ID          string `db:"id"`
	Body        string `db:"body"`
}

// Each opens a working store of every kind, on a database of its own, and
// a database takes several stores at once.
func TestEach(t *testing.T) {
	reg := entity.NewRegistry()
	if err := reg.Register(note{}); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	Each(t, All, func(t *testing.T, db Database) {
		kinds = append(kinds, db.Kind)
		n := 1
		if db.Kind != SQLite {
			n = 2
		}
		for range n {
			s := db.Open(t, reg.Schema(), Options{})
			p := server.Principal{Tenant: "acme", User: "ada"}
			if err := s.RegisterDevice(t.Context(), p, server.Registration{Device: "d1"}, server.Limits{}); err != nil {
				t.Fatal(err)
			}
		}
	})
	if len(kinds) == 0 {
		t.Error("Each ran nothing")
	}
}
