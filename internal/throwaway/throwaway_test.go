package throwaway

import (
	"errors"
	"fmt"
	"testing"
)

type server struct{ n, stops int }

func (s *server) NewDatabase() (string, error) { s.n++; return fmt.Sprint("db", s.n), nil }
func (s *server) Stop()                        { s.stops++ }

var errNone = errors.New("no binaries")

// One server serves every caller, each with a new database; Stop stops it
// once.
func TestShared(t *testing.T) {
	starts := 0
	srv := &server{}
	sh := &Shared[*server]{Name: "X", RequireEnv: "THROWAWAY_TEST_REQUIRE", NoBinaries: errNone,
		Start: func() (*server, error) { starts++; return srv, nil }}
	if a, b := sh.Database(t), sh.Database(t); a == b || starts != 1 {
		t.Errorf("databases %q and %q from %d starts; want two databases from one", a, b, starts)
	}
	sh.Stop()
	sh.Stop()
	if srv.stops != 1 {
		t.Errorf("stopped %d times, want once", srv.stops)
	}
}

// Without binaries the caller is skipped (unless RequireEnv is 1, which
// fails it: not tested here, since that failure would fail this test).
func TestSharedWithoutBinaries(t *testing.T) {
	t.Setenv("THROWAWAY_TEST_REQUIRE", "")
	sh := &Shared[*server]{Name: "X", RequireEnv: "THROWAWAY_TEST_REQUIRE", NoBinaries: errNone,
		Start: func() (*server, error) { return nil, fmt.Errorf("start: %w", errNone) }}
	var skipped bool
	t.Run("caller", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		sh.Database(t)
		t.Error("Database returned without a server")
	})
	if !skipped {
		t.Error("the caller was not skipped")
	}
}
