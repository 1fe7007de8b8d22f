package sim

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// The smallest reproducers of what TestScopes found, each on a server of
// its own with the simulation's scopes, a back office, and one device of
// alice's that reaches the server through a proxy which can run a
// back-office operation just before it forwards the Nth pull page.

// hookProxy forwards to upstream; before forwarding the request to a
// path that an armed hook names, the at-th since it was armed, it runs
// the hook.
type hookProxy struct {
	upstream string
	mu       sync.Mutex
	hooks    []*hook
}

type hook struct {
	prefix string
	at, n  int
	fn     func()
}

// arm runs fn before the at-th request (from 1) to a path starting with
// prefix.
func (h *hookProxy) arm(prefix string, at int, fn func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hooks = append(h.hooks, &hook{prefix: prefix, at: at, fn: fn})
}

func (h *hookProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	var run []func()
	keep := h.hooks[:0]
	for _, k := range h.hooks {
		if strings.HasPrefix(r.URL.Path, k.prefix) {
			if k.n++; k.n == k.at {
				run = append(run, k.fn)
				continue
			}
		}
		keep = append(keep, k)
	}
	h.hooks = keep
	h.mu.Unlock()
	for _, fn := range run {
		fn()
	}
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, h.upstream+r.URL.RequestURI(), r.Body)
	req.Header = r.Header.Clone()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// reproWorld is a server with the scopes of TestScopes, its back office,
// and the proxy alice's device syncs through.
func reproWorld(t *testing.T, lim server.Limits) (*scWorld, *backOffice, *hookProxy, *scDevice) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	w := &scWorld{up: startScServer(t, filepath.Join(dir, "server.db"), lim), lim: lim, notes: map[string][]string{}}
	t.Cleanup(func() { w.up.close() })
	bo := newBackOffice(w, rand.New(rand.NewPCG(1, 2)))
	var rows []wire.Row
	for _, team := range scTeams {
		rows = append(rows, wire.Row{Table: "teams", ID: team, Values: map[string]any{"name": team}})
	}
	for i := range 30 { // many rows in t1: its grant takes several pages
		id := "t1-project-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		rows = append(rows, wire.Row{Table: "projects", ID: id, Values: map[string]any{"team_id": "t1", "name": id}})
	}
	rows = append(rows, wire.Row{Table: "projects", ID: "t4-project", Values: map[string]any{"team_id": "t4", "name": "t4-project"}},
		bo.membership("alice", "t4"))
	if err := bo.write(ctx, rows...); err != nil {
		t.Fatal(err)
	}
	hp := &hookProxy{upstream: w.up.hs.URL}
	ps := httptest.NewServer(hp)
	t.Cleanup(ps.Close)
	alice, err := openScDevice("alice-1", "alice", filepath.Join(dir, "alice.db"), ps.URL, 1, w, 5)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(alice.close)
	if _, err := alice.sync(ctx); err != nil {
		t.Fatal(err)
	}
	return w, bo, hp, alice
}

// t1Rows counts the projects of t1 alice's device holds, tombstones
// included.
func t1Rows(t *testing.T, d *scDevice) (live, tombs int) {
	t.Helper()
	err := d.db.SQL().QueryRow(`SELECT coalesce(sum(_deleted = 0), 0), coalesce(sum(_deleted != 0), 0) FROM projects WHERE team_id = 't1'`).Scan(&live, &tombs)
	if err != nil {
		t.Fatal(err)
	}
	return live, tombs
}

// A membership granted, and revoked while the device's pull is in the
// middle of the pages that bring it the rows of that key: the rows the
// first pages brought must go at the next pull. They stayed while the
// server, finding the principal's keys changed in the middle of the
// phases, started them over from the keys the device held before the
// grant (which equal the principal's keys again), so nothing was evicted.
func TestScopesRevokedDuringGrant(t *testing.T) {
	ctx := context.Background()
	_, bo, hp, alice := reproWorld(t, server.Limits{DeviceActivity: time.Hour})
	if err := bo.grantTeam(ctx, "alice", "t1"); err != nil {
		t.Fatal(err)
	}
	hp.arm("/v1/changes", 2, func() { // before the second page of the grant
		if err := bo.revokeTeam(ctx, "alice", "t1"); err != nil {
			t.Error(err)
		}
	})
	for range 3 {
		if _, err := alice.sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if live, tombs := t1Rows(t, alice); live+tombs > 0 {
		t.Errorf("alice, no longer a member of t1, holds %d live projects of t1 and %d tombstones, brought by the first pages of a grant revoked during it", live, tombs)
	}
}

// A device rebuilt from a snapshot while its principal held a key keeps
// the snapshot's rows of that key as tombstones when the rebuild ends
// without them; when the key is granted again, the pull brings the rows
// at the versions of those tombstones, and the device, which takes a
// row only at a newer version, keeps them deleted.
func TestScopesRebuiltThenGranted(t *testing.T) {
	ctx := context.Background()
	lim := server.Limits{DeviceActivity: 50 * time.Millisecond}
	w, bo, _, alice := reproWorld(t, lim)
	if err := bo.grantTeam(ctx, "alice", "t1"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if live, _ := t1Rows(t, alice); live != 30 {
		t.Fatalf("alice holds %d projects of t1 after the grant, want 30", live)
	}
	// alice goes away; t1 is revoked; the horizon passes her cursor.
	if err := bo.revokeTeam(ctx, "alice", "t1"); err != nil {
		t.Fatal(err)
	}
	if err := bo.write(ctx, wire.Row{Table: "projects", ID: "t4-gone", Values: map[string]any{"team_id": "t4", "name": "x"}}); err != nil {
		t.Fatal(err)
	}
	if err := bo.write(ctx, wire.Row{Table: "projects", ID: "t4-gone", Deleted: true, Values: map[string]any{"team_id": "t4", "name": "x"}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * lim.DeviceActivity)
	for range 3 {
		if err := w.sweepOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := alice.sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Rebuilt {
		t.Skip("alice was not rebuilt: the horizon did not pass her cursor")
	}
	if live, tombs := t1Rows(t, alice); live+tombs > 0 {
		t.Errorf("after a rebuild without t1, alice holds %d live projects of t1 and %d tombstones (their values with them)", live, tombs)
	}
	if err := bo.grantTeam(ctx, "alice", "t1"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := alice.sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if live, tombs := t1Rows(t, alice); live != 30 {
		t.Errorf("granted t1 again after a rebuild, alice holds %d live projects of t1 (and %d tombstones), want 30", live, tombs)
	}
}

// A device rebuilding from a snapshot of several pages while its
// principal gains a key between two pages: the later pages bring rows of
// that key, but the server recorded the device's keys as they were at the
// first page. When the key is revoked before the device's next pull, the
// keys it is recorded with equal its principal's again, and nothing
// evicts the rows of that key the snapshot brought.
func TestScopesGrantedDuringSnapshot(t *testing.T) {
	ctx := context.Background()
	lim := server.Limits{DeviceActivity: 50 * time.Millisecond}
	w, bo, hp, alice := reproWorld(t, lim)
	// alice goes away until the horizon passes her cursor.
	for _, r := range []wire.Row{
		{Table: "projects", ID: "t4-gone", Values: map[string]any{"team_id": "t4", "name": "x"}},
		{Table: "projects", ID: "t4-gone", Deleted: true, Values: map[string]any{"team_id": "t4", "name": "x"}},
	} {
		if err := bo.write(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * lim.DeviceActivity)
	for range 3 {
		if err := w.sweepOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Her snapshot's first page holds teams only (5 rows a page); t1 is
	// granted before the second, and revoked before her pull that follows
	// the rebuild.
	hp.arm("/v1/snapshot", 2, func() {
		if err := bo.grantTeam(ctx, "alice", "t1"); err != nil {
			t.Error(err)
		}
		hp.arm("/v1/changes", 1, func() {
			if err := bo.revokeTeam(ctx, "alice", "t1"); err != nil {
				t.Error(err)
			}
		})
	})
	rep, err := alice.sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Rebuilt {
		t.Skip("alice was not rebuilt: the horizon did not pass her cursor")
	}
	for range 2 {
		if _, err := alice.sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if live, tombs := t1Rows(t, alice); live+tombs > 0 {
		t.Errorf("alice, granted t1 during her rebuild's snapshot and revoked before her next pull, holds %d live projects of t1 and %d tombstones", live, tombs)
	}
}

// A device edits a project that the back office has just moved out of
// its person's teams: the push is refused and the answer removes the
// project (Evict), while its tasks stay until the pull that follows, so
// between the two the device holds tasks whose project is gone, and a
// local write to one of them fails on its foreign key.
func TestScopesRefusedParentLeavesChildren(t *testing.T) {
	ctx := context.Background()
	_, bo, hp, alice := reproWorld(t, server.Limits{DeviceActivity: time.Hour})
	if err := bo.write(ctx, wire.Row{Table: "tasks", ID: "t4-task", Values: map[string]any{"project_id": "t4-project", "title": "x", "done": int64(0)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bo.write(ctx, wire.Row{Table: "projects", ID: "t4-project", Values: map[string]any{"team_id": "t1", "name": "t4-project"}}); err != nil {
		t.Fatal(err)
	}
	if err := alice.db.Save(ctx, &ScProject{ID: "t4-project", TeamID: "t4", Name: "renamed by alice"}); err != nil {
		t.Fatal(err)
	}
	var orphans int
	var writeErr error
	hp.arm("/v1/changes", 1, func() { // after the push's answer, before the pull
		alice.db.SQL().QueryRow(`SELECT count(*) FROM pragma_foreign_key_check`).Scan(&orphans)
		writeErr = alice.db.Update(ctx, func(tx *localdb.Tx) error {
			var k ScTask
			if err := tx.Get(ctx, &k, "t4-task"); err != nil {
				return err
			}
			k.Title = "edited during the sync"
			return tx.Save(ctx, &k)
		})
	})
	if _, err := alice.sync(ctx); err != nil {
		t.Fatal(err)
	}
	log, err := alice.db.Conflicts(ctx)
	if err != nil || len(log) != 1 || log[0].Strategy != wire.StrategyForbidden || log[0].RowID != "t4-project" {
		t.Fatalf("alice's conflict log %+v (%v), want the refusal of t4-project", log, err)
	}
	if orphans > 0 || (writeErr != nil && !errors.Is(writeErr, localdb.ErrNotFound)) {
		t.Errorf("between the push that removed a refused project and the pull, alice held %d rows referencing a missing one; an edit of its task then: %v", orphans, writeErr)
	}
}

// A membership revoked, and granted again while the device's pull is in
// the middle of the pages that evict the rows of that key: the rows the
// first pages evicted must come back. The phases start over toward the
// new keys, and the rows of the key evicted so far must be granted again.
func TestScopesGrantedDuringEviction(t *testing.T) {
	ctx := context.Background()
	_, bo, hp, alice := reproWorld(t, server.Limits{DeviceActivity: time.Hour})
	if err := bo.grantTeam(ctx, "alice", "t1"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if live, _ := t1Rows(t, alice); live != 30 {
		t.Fatalf("alice holds %d projects of t1 after the grant, want 30", live)
	}
	if err := bo.revokeTeam(ctx, "alice", "t1"); err != nil {
		t.Fatal(err)
	}
	hp.arm("/v1/changes", 2, func() { // before the second page of the eviction
		if err := bo.grantTeam(ctx, "alice", "t1"); err != nil {
			t.Error(err)
		}
	})
	for range 3 {
		if _, err := alice.sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if live, tombs := t1Rows(t, alice); live != 30 {
		t.Errorf("alice, a member of t1 again, holds %d live projects of t1 (and %d tombstones), want 30: the rows the first pages of an eviction removed never came back", live, tombs)
	}
}
