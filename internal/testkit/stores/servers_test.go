package stores

import (
	"errors"
	"fmt"
	"testing"

	"github.com/tethersync/tether/internal/dbserver"
)

type fake struct{ n, stops int }

func (s *fake) NewDatabase() (string, error) { s.n++; return fmt.Sprint("db", s.n), nil }
func (s *fake) Stop()                        { s.stops++ }

// One server serves every caller, each with a new database; stop stops it
// once.
func TestShared(t *testing.T) {
	starts := 0
	srv := &fake{}
	sh := &shared{name: "X", requireEnv: "STORES_TEST_REQUIRE",
		start: func() (dbServer, error) { starts++; return srv, nil }}
	if a, b := sh.database(t), sh.database(t); a == b || starts != 1 {
		t.Errorf("databases %q and %q from %d starts; want two databases from one", a, b, starts)
	}
	sh.stop()
	sh.stop()
	if srv.stops != 1 {
		t.Errorf("stopped %d times, want once", srv.stops)
	}
}

// Without binaries the caller is skipped (unless requireEnv is 1, which
// fails it: not tested here, since that failure would fail this test).
func TestSharedWithoutBinaries(t *testing.T) {
	t.Setenv("STORES_TEST_REQUIRE", "")
	sh := &shared{name: "X", requireEnv: "STORES_TEST_REQUIRE",
		start: func() (dbServer, error) { return nil, fmt.Errorf("start: %w", dbserver.ErrNoBinaries) }}
	var skipped bool
	t.Run("caller", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		sh.database(t)
		t.Error("database returned without a server")
	})
	if !skipped {
		t.Error("the caller was not skipped")
	}
	if errors.Is(sh.failed, dbserver.ErrNoBinaries) == false {
		t.Errorf("failed = %v", sh.failed)
	}
}
