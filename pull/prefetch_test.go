package pull_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tethersync/tether/pull"
	"github.com/tethersync/tether/wire"
)

// failingStore holds no rows and fails to apply any page.
type failingStore struct{}

func (failingStore) Cursor(context.Context) (string, error) { return "", nil }
func (failingStore) ApplyChanges(context.Context, []wire.Row, string) (int, error) {
	return 0, errors.New("disk full")
}
func (failingStore) DeviceID() string { return "d1" }
func (failingStore) OwnSessions(context.Context) ([]string, int64, error) {
	return []string{"s1"}, 1, nil
}
func (failingStore) ForgetOwn(context.Context, int64) error { return nil }
func (failingStore) Learned() []wire.Conflict               { return nil }
func (failingStore) StashChanges(context.Context, wire.Changes) error {
	return errors.New("disk full")
}

// endless answers every request with a page that has more after it, and
// counts the requests. It does not synchronize: the engine must order its
// calls (the race detector checks).
type endless struct{ calls int }

func (e *endless) Changes(ctx context.Context, device, cursor string, limit int, own []string) (wire.Changes, error) {
	e.calls++
	return wire.Changes{Changes: []wire.Row{{Table: "t", ID: "1"}}, Cursor: cursor + "+", More: true}, nil
}

// A pull that fails while the next page is being fetched waits for that
// fetch before it returns: it leaves no request running that reads the
// engine's state as the next pull writes it (run with -race).
func TestPullWaitsForItsPrefetch(t *testing.T) {
	tr := &endless{}
	eng := pull.New(failingStore{}, tr, pull.Options{})
	for i := range 2 {
		if _, err := eng.Pull(t.Context()); err == nil {
			t.Fatalf("pull %d: the store failed, want an error", i)
		}
		// The first page, and the next one fetched while it was applied.
		if got, want := tr.calls, 2*(i+1); got != want {
			t.Fatalf("after pull %d: %d requests made, want %d", i, got, want)
		}
	}
}
