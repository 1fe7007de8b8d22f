package pgstore_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/pgstore"
	"github.com/tethersync/tether/wire"
)

func TestMain(m *testing.M) { os.Exit(stores.Main(m)) }

var notes = entity.Schema{Tables: []entity.Table{{Name: "notes", Columns: []entity.Column{
	{Name: "id", Kind: entity.KindText},
	{Name: "body", Kind: entity.KindText},
}}}}

// syncBuffer is a log destination safe for the listener's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A listener whose connection the database ends is logged and listens
// again: a later commit's event arrives.
func TestListenerComesBack(t *testing.T) {
	var logs syncBuffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	defer slog.SetDefault(old)

	ctx := t.Context()
	s, err := pgstore.Open(ctx, stores.PostgresURL(t), notes, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := server.Principal{Tenant: "acme", User: "ada"}
	if err := s.RegisterDevice(ctx, p, server.Registration{Device: "d1"}, server.Limits{}); err != nil {
		t.Fatal(err)
	}
	events, err := s.Subscribe(ctx, p.Tenant)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN %'`); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		version := commit(t, s, p, i)
		if waitFor(ctx, events, version) {
			break
		}
	}
	for _, want := range []string{"failed; retrying", "again"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log %q lacks %q", logs.String(), want)
		}
	}
}

// commit pushes one row in a session of its own and returns its version.
func commit(t *testing.T, s *pgstore.Store, p server.Principal, i int) int64 {
	t.Helper()
	row := wire.Row{Table: "notes", ID: "n1", HLC: "0000000000001.000000.d1", Values: map[string]any{"body": strings.Repeat("x", i)}}
	last := &server.LastBatch{Seq: 0}
	c, err := s.Push(t.Context(), p, "d1", "s"+string(rune('a'+i%26))+strings.Repeat("z", i/26), 0, []wire.Row{row},
		server.PushOptions{Open: true, Commit: last, Resolve: lastWriter})
	if err != nil {
		t.Fatal(err)
	}
	return c.Version
}

func lastWriter(context.Context, server.Conflict) (server.Resolution, server.Strategy, error) {
	return server.Resolution{Winner: wire.WinnerClient}, server.ClientWins, nil
}

// waitFor reports whether the event of version arrives while commits are
// still seen as they happen (a short wait: the loop commits again).
func waitFor(ctx context.Context, events <-chan wire.Event, version int64) bool {
	timer := time.NewTimer(500 * time.Millisecond)
	defer timer.Stop()
	for {
		select {
		case ev := <-events:
			if ev.Version == version {
				return true
			}
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}
