package pull_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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
func (failingStore) ApplyLastChanges(context.Context, []wire.Row, string, int64) (int, error) {
	return 0, errors.New("disk full")
}
func (failingStore) Learned() []wire.Conflict { return nil }
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

// heads is a HeadTransport of endless pages: each tells its head, with
// the cursor given by at (the page's own by default), before it returns.
// It counts the pages fetched that the store has not taken yet.
type heads struct {
	at func(cursor string) string

	mu          sync.Mutex
	cursors     []string // asked for, in order
	outstanding int      // fetched or being fetched, not stored yet
	most        int
}

func (h *heads) Changes(ctx context.Context, device, cursor string, limit int, own []string) (wire.Changes, error) {
	return h.ChangesHead(ctx, device, cursor, limit, own, nil)
}

func (h *heads) ChangesHead(ctx context.Context, device, cursor string, limit int, own []string, head func(wire.Changes)) (wire.Changes, error) {
	h.mu.Lock()
	h.cursors = append(h.cursors, cursor)
	h.outstanding++
	h.most = max(h.most, h.outstanding)
	h.mu.Unlock()
	page := wire.Changes{Changes: []wire.Row{{Table: "t", ID: cursor}}, Cursor: cursor + "+", More: len(cursor) < 12, Partial: true}
	if head != nil {
		told := page
		told.Changes = nil
		if h.at != nil {
			told.Cursor = h.at(cursor)
		}
		head(told)
	}
	time.Sleep(time.Millisecond) // the rows, read after the head
	return page, nil
}

// stored is taken by the store.
func (h *heads) stored() {
	h.mu.Lock()
	h.outstanding--
	h.mu.Unlock()
}

// slowStore sets pages aside slowly and tells the transport.
type slowStore struct {
	failingStore
	tr      *heads
	applied []string
}

func (s *slowStore) StashChanges(_ context.Context, page wire.Changes) error {
	time.Sleep(5 * time.Millisecond)
	s.tr.stored()
	s.applied = append(s.applied, page.Cursor)
	return nil
}

func (s *slowStore) ApplyChanges(_ context.Context, _ []wire.Row, cursor string) (int, error) {
	s.tr.stored()
	s.applied = append(s.applied, cursor)
	return 1, nil
}

func (s *slowStore) ApplyLastChanges(ctx context.Context, rows []wire.Row, cursor string, _ int64) (int, error) {
	return s.ApplyChanges(ctx, rows, cursor)
}

// With a HeadTransport, the next page is asked for from the head of the
// page before, while the store is slower than the server: never more than
// three pages at a time (the one being stored, one fetched, one being
// fetched), each asked for once, in order.
func TestPullAsksFromTheHead(t *testing.T) {
	tr := &heads{}
	st := &slowStore{tr: tr}
	if _, err := pull.New(st, tr, pull.Options{}).Pull(t.Context()); err != nil {
		t.Fatal(err)
	}
	var want []string // "" to 13 +: a page after each up to 12
	for c := ""; len(c) <= 13; c += "+" {
		want = append(want, c)
	}
	if !slices.Equal(tr.cursors, want[:len(want)-1]) {
		t.Errorf("asked for %q, want %q", tr.cursors, want[:len(want)-1])
	}
	if !slices.Equal(st.applied, want[1:]) {
		t.Errorf("stored %q, want %q", st.applied, want[1:])
	}
	if tr.most > 3 {
		t.Errorf("%d pages held at once, want at most 3", tr.most)
	}
	if tr.most < 3 {
		t.Errorf("at most %d pages at once: the page after next was not asked for from a head", tr.most)
	}
}

// A page that ends elsewhere than its head said (a server that gave its
// cursor twice) drops the fetch its head started: the next page is asked
// for from where the page ended.
func TestPullDropsAWrongHead(t *testing.T) {
	tr := &heads{at: func(cursor string) string { return cursor + "?" }}
	st := &slowStore{tr: tr}
	if _, err := pull.New(st, tr, pull.Options{}).Pull(t.Context()); err != nil {
		t.Fatal(err)
	}
	var want []string
	for c := ""; len(c) <= 12; c += "+" {
		want = append(want, c)
	}
	var got []string
	for _, c := range tr.cursors {
		if !strings.HasSuffix(c, "?") { // the dropped fetches
			got = append(got, c)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("asked for %q, want %q and dropped ones", tr.cursors, want)
	}
	if !slices.Equal(st.applied, append(want[1:], want[len(want)-1]+"+")) {
		t.Errorf("stored %q", st.applied)
	}
}
