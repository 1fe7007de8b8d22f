package sqlitestore_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/sqlitestore"
	"github.com/tethersync/tether/wire"
)

// TestWritersTakeTurnsInOrder: write transactions that wait for SQLite's
// single writer get it in the order they came (database/sql alone hands a
// freed connection to a random waiter). A push holds the writer in its
// resolver while six pushes queue behind it, one after the other; their
// commits get versions in that order.
func TestWritersTakeTurnsInOrder(t *testing.T) {
	ctx := context.Background()
	s, err := sqlitestore.Open(filepath.Join(t.TempDir(), "server.db"), noteSchema(t), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := server.Principal{Tenant: "acme", User: "ada"}
	const waiters = 6
	for i := range waiters + 1 {
		if err := s.RegisterDevice(ctx, p, server.Registration{Device: fmt.Sprint("d", i)}, server.Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	note := func(id string) []wire.Row {
		return []wire.Row{{Table: "notes", ID: id, HLC: "0000000000001.000000.d0", Values: map[string]any{"text": id}}}
	}
	push := func(device, session string, rows []wire.Row, resolve server.Resolver) (*wire.Commit, error) {
		return s.Push(ctx, p, device, session, 0, rows, server.PushOptions{Open: true, Resolve: resolve,
			Commit: &server.LastBatch{Seq: 0, Digest: strings.Repeat("1", 64)}})
	}
	if _, err := push("d0", "first", note("x"), nil); err != nil {
		t.Fatal(err)
	}
	// The holder pushes x again from its base 0: a conflict, resolved
	// inside the writer's transaction.
	held, release := make(chan struct{}), make(chan struct{})
	holder := make(chan error, 1)
	go func() {
		_, err := push("d0", "holder", note("x"), func(ctx context.Context, c server.Conflict) (server.Resolution, server.Strategy, error) {
			close(held)
			<-release
			return server.Resolution{Winner: wire.WinnerServer}, server.ServerWins, nil
		})
		holder <- err
	}()
	select {
	case <-held:
	case err := <-holder:
		t.Fatalf("the holder's push ended before its resolver ran: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the holder's resolver did not run in 30 s")
	}
	type result struct {
		i       int
		version int64
		err     error
	}
	results := make(chan result, waiters)
	for i := 1; i <= waiters; i++ {
		go func() {
			c, err := push(fmt.Sprint("d", i), fmt.Sprint("waiter", i), note(fmt.Sprint("n", i)), nil)
			r := result{i: i, err: err}
			if c != nil {
				r.version = c.Version
			}
			results <- r
		}()
		waitQueued(t, i)
	}
	close(release)
	if err := <-holder; err != nil {
		t.Fatal(err)
	}
	versions := make([]int64, waiters+1)
	for range waiters {
		r := <-results
		if r.err != nil {
			t.Fatalf("waiter %d: %v", r.i, r.err)
		}
		versions[r.i] = r.version
	}
	for i := 2; i <= waiters; i++ {
		if versions[i] <= versions[i-1] {
			t.Fatalf("commit versions by arrival: %v; want them in arrival order", versions[1:])
		}
	}
}

// waitQueued waits, at most 30 s, until n goroutines wait for the store's
// writer (sqlstore's enterWriter).
func waitQueued(t *testing.T, n int) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(30 * time.Second)
	for {
		stacks := buf[:runtime.Stack(buf, true)]
		if got := bytes.Count(stacks, []byte("sqlstore.(*Store).enterWriter(")); got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pushes do not wait in the writer's queue after 30 s", n)
		}
		time.Sleep(time.Millisecond)
	}
}
