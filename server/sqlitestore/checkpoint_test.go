package sqlitestore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/sqlitestore"
	"github.com/tethersync/tether/wire"
)

// TestCommitsAreCheckpointed pushes and commits sessions of about 4 MB:
// the store's commits leave the write-ahead log to its background
// checkpointer, which copies it into the database file without another
// write, well before its idle interval.
func TestCommitsAreCheckpointed(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "server.db")
	s, err := sqlitestore.Open(path, noteSchema(t), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := server.Principal{Tenant: "acme", User: "ada"}
	if err := s.RegisterDevice(ctx, p, server.Registration{Device: "d1"}, server.Limits{}); err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("x", 4000)
	for session := range 2 {
		before := fileSize(t, path)
		id := fmt.Sprint("s", session)
		for seq := range 10 {
			var rows []wire.Row
			for i := range 100 {
				rows = append(rows, wire.Row{Table: "notes", ID: fmt.Sprint(id, "-", seq, "-", i), HLC: "0000000000001.000000.d1",
					Values: map[string]any{"text": text}})
			}
			if _, err := s.Push(ctx, p, "d1", id, seq, rows, server.PushOptions{Open: seq == 0}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Commit(ctx, p, "d1", id, nil, server.Limits{}, nil); err != nil {
			t.Fatal(err)
		}
		// 1,000 rows of 4 KB: more than 4 MB in the file once copied.
		deadline := time.Now().Add(10 * time.Second)
		for fileSize(t, path) < before+4<<20 {
			if time.Now().After(deadline) {
				t.Fatalf("session %d: the file holds %d bytes (%d before) 10 s after the commit: the log was not checkpointed", session, fileSize(t, path), before)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
