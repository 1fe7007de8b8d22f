package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// What a user may not write is refused row by row: the rest of the
// session commits, the device's conflict log records each refused row
// with strategy forbidden, a reason and the values it tried to write, its
// copy returns to the server's or leaves, and its later pushes go through
// (issue 20, item 5).
func TestScopesWrites(t *testing.T) {
	authorize := func(ctx context.Context, p server.Principal, table string, old, new *wire.Row) error {
		if table == "notes" && new != nil && !new.Deleted && new.Values["title"] == "secret" {
			return fmt.Errorf("note %s: no secret notes here: %w", new.ID, server.ErrForbidden)
		}
		return nil
	}
	eachFS(t, server.Options{Authorize: authorize}, func(t *testing.T, e *fsEnv) {
		e.seed(t)
		bob, ada := e.device(t, "bob"), e.device(t, "ada")
		bob.Sync(t)
		ada.Sync(t)

		var pB1 fsProject
		if err := bob.DB.Get(ctx, &pB1, "pB1"); err != nil {
			t.Fatal(err)
		}
		pB1.TeamID = "A"
		var nBob1 fsNote
		if err := bob.DB.Get(ctx, &nBob1, "nBob1"); err != nil {
			t.Fatal(err)
		}
		nBob1.Title = "bob's edited"
		var teamA fsTeam
		if err := bob.DB.Get(ctx, &teamA, "A"); err != nil {
			t.Fatal(err)
		}
		teamA.Name = "renamed by bob"
		save(t, bob,
			// Refused:
			&fsProject{ID: "pX", TeamID: "A", Name: "bob's in A"}, // an insert into team A
			&fsProject{ID: "pA1", TeamID: "A", Name: "hijacked"},  // an update of a project of A he cannot see
			&fsProject{ID: "pA2", TeamID: "B", Name: "stolen"},    // ... moving it into his team
			&pB1, // a move of his project into team A
			&fsNote{ID: "nX", OwnerID: "ada", Title: "for ada"},     // a note of ada's
			&fsNote{ID: "nSecret", OwnerID: "bob", Title: "secret"}, // refused by Authorize
			// Allowed:
			&fsTask{ID: "tB2b", ProjectID: "pB2", Title: "new"},
			&nBob1,
			&teamA, // teams are not scoped
			&fsProject{ID: "pB9", TeamID: "B", Name: "new in B"},
			&fsTask{ID: "tB9a", ProjectID: "pB9", Title: "under the new project"},
		)
		rep := bob.Sync(t)
		if rep.Conflicts != 6 {
			t.Errorf("bob's sync had %d conflicts, want 6", rep.Conflicts)
		}
		log := forbidden(t, bob)
		want := map[string]map[string]any{
			"projects pX":   {"team_id": "A", "name": "bob's in A"},
			"projects pA1":  {"team_id": "A", "name": "hijacked"},
			"projects pA2":  {"team_id": "B", "name": "stolen"},
			"projects pB1":  {"team_id": "A", "name": "B one"},
			"notes nX":      {"owner_id": "ada", "title": "for ada"},
			"notes nSecret": {"owner_id": "bob", "title": "secret"},
		}
		for key, values := range want {
			c, ok := log[key]
			if !ok {
				t.Errorf("no forbidden entry for %s in bob's conflict log", key)
				continue
			}
			if c.Winner != wire.WinnerServer || c.Reason == "" {
				t.Errorf("%s: winner %q, reason %q; want the server's, and why", key, c.Winner, c.Reason)
			}
			for col, v := range values {
				if c.Local.Values[col] != v {
					t.Errorf("%s: the log's local %s = %v, want %v (what bob tried to write)", key, col, c.Local.Values[col], v)
				}
			}
		}
		if c := log["notes nSecret"]; !strings.Contains(c.Reason, "no secret notes here") {
			t.Errorf("the refused note's reason %q, want Authorize's", c.Reason)
		}
		if len(log) != len(want) {
			t.Errorf("bob's forbidden entries: %d, want %d", len(log), len(want))
		}

		// Nothing refused was applied; the rest was.
		projects, names := e.serverRows(t, "projects", "team_id"), e.serverRows(t, "projects", "name")
		if _, ok := projects["pX"]; ok {
			t.Error("bob's project in team A is on the server")
		}
		if names["pA1"] != "A one" || projects["pA2"] != "A" || names["pA2"] != "A two" || projects["pB1"] != "B" {
			t.Errorf("server projects %v %v; want pA1, pA2 and pB1 unchanged", projects, names)
		}
		notes := e.serverRows(t, "notes", "title")
		if _, ok := notes["nX"]; ok {
			t.Error("bob's note for ada is on the server")
		}
		if _, ok := notes["nSecret"]; ok {
			t.Error("the note Authorize refused is on the server")
		}
		tasks := e.serverRows(t, "tasks", "project_id")
		if notes["nBob1"] != "bob's edited" || tasks["tB2b"] != "pB2" || tasks["tB9a"] != "pB9" || projects["pB9"] != "B" ||
			e.serverRows(t, "teams", "name")["A"] != "renamed by bob" {
			t.Errorf("bob's allowed writes not all applied: notes %v, tasks %v, projects %v", notes, tasks, projects)
		}

		// Bob's copies: back to the server's, or gone.
		for _, r := range [][2]string{{"projects", "pX"}, {"projects", "pA1"}, {"projects", "pA2"}, {"notes", "nX"}, {"notes", "nSecret"}} {
			if holds(t, bob, r[0], r[1]) {
				t.Errorf("%s %s, refused and not bob's to see, is still on his device", r[0], r[1])
			}
		}
		if err := bob.DB.Get(ctx, &pB1, "pB1"); err != nil || pB1.TeamID != "B" {
			t.Errorf("pB1 on bob's device: %+v, %v; want it back in team B", pB1, err)
		}
		e.checkHolds(t, bob, "bob")

		// His next push is not blocked.
		save(t, bob, &fsTask{ID: "tB2c", ProjectID: "pB2", Title: "after"})
		rep = bob.Sync(t)
		if rep.Pushed["tasks"] != 1 || rep.Conflicts != 0 {
			t.Errorf("bob's next sync pushed %v with %d conflicts, want the task and none", rep.Pushed, rep.Conflicts)
		}
		if e.serverRows(t, "tasks", "title")["tB2c"] != "after" {
			t.Error("bob's next task is not on the server")
		}
		if len(forbidden(t, bob)) != len(want) {
			t.Error("bob's conflict log changed after an allowed push")
		}

		// Ada sees the team renamed, nothing bob was refused.
		ada.Sync(t)
		e.checkHolds(t, ada, "ada")
		if err := ada.DB.Get(ctx, &teamA, "A"); err != nil || teamA.Name != "renamed by bob" {
			t.Errorf("team A on ada's device: %+v, %v", teamA, err)
		}

		// Raw rows: a delete of a task of team A and a task under a project
		// of A are refused with Evict rows; the allowed row commits.
		dev := bob.DB.DeviceID()
		stamp := func(i int) string { return fmt.Sprintf("%d.%06d.%s", time.Now().UnixMilli(), i, dev) }
		c := pushRaw(t, bob,
			wire.Row{Table: "tasks", ID: "tA1a", Deleted: true, HLC: stamp(1), Values: map[string]any{"project_id": "pA1", "title": "a"}},
			wire.Row{Table: "tasks", ID: "tA1x", HLC: stamp(2), Values: map[string]any{"project_id": "pA1", "title": "under a project of A"}},
			wire.Row{Table: "tasks", ID: "tB1z", HLC: stamp(3), Values: map[string]any{"project_id": "pB1", "title": "z"}})
		refused := map[string]wire.Conflict{}
		for _, cf := range c.Conflicts {
			refused[cf.ID] = cf
		}
		for _, id := range []string{"tA1a", "tA1x"} {
			if cf := refused[id]; cf.Strategy != wire.StrategyForbidden || !cf.Row.Evict || cf.Reason == "" || cf.Winner != wire.WinnerServer {
				t.Errorf("commit answer for %s: %+v; want it refused, with an Evict row and a reason", id, cf)
			}
		}
		if len(c.Conflicts) != 2 {
			t.Errorf("commit answer %+v; want 2 conflicts", c.Conflicts)
		}
		tasks = e.serverRows(t, "tasks", "title")
		if _, ok := tasks["tA1x"]; tasks["tA1a"] != "a" || tasks["tB1z"] != "z" || ok {
			t.Errorf("server tasks %v; want tA1a live, tA1x refused and tB1z applied", tasks)
		}

		// Bob in team A for a while: then, offline after losing it, he
		// edits a project of A and deletes a task of A. Both are refused,
		// logged, and leave his device with the rest of team A.
		e.write(t, membership("m-bob-A", "bob", "A"))
		bob.Sync(t)
		e.checkHolds(t, bob, "bob")
		e.write(t, deleted(membership("m-bob-A", "bob", "A")))
		var pA2 fsProject
		if err := bob.DB.Get(ctx, &pA2, "pA2"); err != nil {
			t.Fatal(err)
		}
		pA2.Name = "edited after the revocation"
		save(t, bob, &pA2)
		del(t, bob, &fsTask{ID: "tA2a"})
		rep = bob.Sync(t)
		log = forbidden(t, bob)
		if c, ok := log["projects pA2"]; !ok || c.Local.Values["name"] != "edited after the revocation" || c.Reason == "" {
			t.Errorf("bob's conflict log: %+v; want his edit of pA2 refused, with its values", log)
		}
		if c, ok := log["tasks tA2a"]; !ok || !c.Local.Deleted || c.Reason == "" {
			t.Errorf("bob's conflict log: %+v; want his delete of tA2a refused", log)
		}
		for _, c := range openConflicts(t, bob) {
			if !c.Local.Deleted && len(c.Local.Values) == 0 {
				t.Errorf("bob's conflict log entry %d for %s %s (%s) does not say what he wrote: local %+v", c.ID, c.Table, c.RowID, c.Reason, c.Local)
			}
		}
		for _, r := range teamARows {
			if holds(t, bob, r[0], r[1]) {
				t.Errorf("%s %s of team A still on bob's device after he left it", r[0], r[1])
			}
		}
		if names := e.serverRows(t, "projects", "name"); names["pA2"] != "A two" {
			t.Errorf("pA2 on the server is named %q, want the refused edit not applied", names["pA2"])
		}
		if _, ok := e.serverRows(t, "tasks", "id")["tA2a"]; !ok {
			t.Error("tA2a was deleted on the server by a refused delete")
		}
		e.checkHolds(t, bob, "bob")
		ada.Sync(t)
		e.checkHolds(t, ada, "ada")
	})
}

// Authorize sees the server's row before a write and the row after it,
// for scoped and unscoped tables: what it refuses is logged on the
// device, which gets the server's row back (issue 20, item 5).
func TestScopesAuthorizeOldAndNew(t *testing.T) {
	authorize := func(ctx context.Context, p server.Principal, table string, old, new *wire.Row) error {
		switch {
		case table == "tasks" && old != nil && old.Values["title"] == "locked":
			what := "change"
			if new.Deleted {
				what = "delete"
			}
			return fmt.Errorf("%s may not %s locked task %s: %w", p.User, what, old.ID, server.ErrForbidden)
		case table == "teams" && old == nil:
			return fmt.Errorf("only the back office adds teams: %w", server.ErrForbidden)
		}
		return nil
	}
	eachFS(t, server.Options{Authorize: authorize}, func(t *testing.T, e *fsEnv) {
		e.seed(t)
		e.write(t, task("tL1", "pB1", "locked"), task("tL2", "pB1", "locked"), team("Z"))
		bob := e.device(t, "bob")
		bob.Sync(t)
		var tk fsTask
		if err := bob.DB.Get(ctx, &tk, "tL1"); err != nil {
			t.Fatal(err)
		}
		tk.Title = "unlocked by bob"
		save(t, bob, &tk, &fsTeam{ID: "E", Name: "bob's team"}, &fsTask{ID: "tB1n", ProjectID: "pB1", Title: "new"})
		del(t, bob, &fsTask{ID: "tL2"})
		bob.Sync(t)
		log := forbidden(t, bob)
		for key, reason := range map[string]string{
			"tasks tL1": "bob may not change locked task tL1",
			"tasks tL2": "bob may not delete locked task tL2",
			"teams E":   "only the back office adds teams",
		} {
			if !strings.Contains(log[key].Reason, reason) {
				t.Errorf("%s: conflict log reason %q, want %q", key, log[key].Reason, reason)
			}
		}
		titles := e.serverRows(t, "tasks", "title")
		if titles["tL1"] != "locked" || titles["tL2"] != "locked" || titles["tB1n"] != "new" {
			t.Errorf("server tasks %v; want tL1 and tL2 untouched, tB1n applied", titles)
		}
		if err := bob.DB.Get(ctx, &tk, "tL1"); err != nil || tk.Title != "locked" {
			t.Errorf("tL1 on bob's device %+v, %v; want the server's back", tk, err)
		}
		if err := bob.DB.Get(ctx, &tk, "tL2"); err != nil || tk.Title != "locked" {
			t.Errorf("tL2 on bob's device %+v, %v; want it back", tk, err)
		}
		if holds(t, bob, "teams", "E") {
			t.Error("the refused team is still on bob's device")
		}
		e.checkHolds(t, bob, "bob")
	})
}

// A refused row whose server copy the device may see, under a parent it
// has not pulled yet (a key granted since its last sync): the copy comes
// back with its parent, and the device's syncs go on (issue 20, item 5).
func TestScopesRefusedRowUnderNewParent(t *testing.T) {
	eachFS(t, server.Options{}, func(t *testing.T, e *fsEnv) {
		e.seed(t)
		bob := e.device(t, "bob")
		bob.Sync(t)
		// Bob moves from team B to team C, and tB1a with him.
		e.write(t, membership("m-bob-C", "bob", "C"), deleted(membership("m-bob-B", "bob", "B")), task("tB1a", "pC1", "a"))
		// Offline, bob edits tB1a, under pB1 as he knows it: the row after
		// his edit is in team B, which he has left.
		var tk fsTask
		if err := bob.DB.Get(ctx, &tk, "tB1a"); err != nil {
			t.Fatal(err)
		}
		tk.Title = "edited by bob"
		save(t, bob, &tk)
		for i := range 3 { // a device whose push answer cannot be applied is stuck
			if _, err := bob.Co.SyncNow(ctx); err != nil {
				t.Errorf("bob's sync %d: %v", i, err)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
		if c, ok := forbidden(t, bob)["tasks tB1a"]; !ok || c.Local.Values["title"] != "edited by bob" {
			t.Errorf("bob's conflict log %+v; want his edit of tB1a refused", openConflicts(t, bob))
		}
		if err := bob.DB.Get(ctx, &tk, "tB1a"); err != nil || tk.ProjectID != "pC1" || tk.Title != "a" {
			t.Errorf("tB1a on bob's device: %+v, %v; want the server's, under pC1", tk, err)
		}
		e.checkHolds(t, bob, "bob")
	})
}

// A conflict the server wins (last writer wins: the back office moved the
// row after the device's edit) on a row now under a parent of a team
// granted since the device's last sync: the winner comes back with its
// parent, and the device's syncs go on (issue 20, item 3).
func TestScopesConflictUnderNewParent(t *testing.T) {
	eachFS(t, server.Options{}, func(t *testing.T, e *fsEnv) {
		e.seed(t)
		bob := e.device(t, "bob")
		bob.Sync(t)
		var tk fsTask
		if err := bob.DB.Get(ctx, &tk, "tB1a"); err != nil {
			t.Fatal(err)
		}
		tk.Title = "edited by bob"
		save(t, bob, &tk)
		e.clock.Advance(time.Minute) // the server stamps the move later than bob's edit
		e.write(t, membership("m-bob-C", "bob", "C"), task("tB1a", "pC1", "a, moved to C"))
		for i := range 2 {
			if _, err := bob.Co.SyncNow(ctx); err != nil {
				t.Fatalf("bob's sync %d: %v", i, err)
			}
		}
		if err := bob.DB.Get(ctx, &tk, "tB1a"); err != nil || tk.ProjectID != "pC1" || tk.Title != "a, moved to C" {
			t.Errorf("tB1a on bob's device: %+v, %v; want the server's, under pC1", tk, err)
		}
		if log := openConflicts(t, bob); len(log) != 1 || log[0].RowID != "tB1a" || log[0].Strategy != string(server.LastWriterWins) {
			t.Errorf("bob's conflict log %+v; want his edit of tB1a lost to the later move", log)
		}
		e.checkHolds(t, bob, "bob")
	})
}

// A principal holding more than MaxPrincipalKeys keys is refused its
// pulls, by a message naming the count, and gets nothing (issue 20,
// item 1).
func TestScopesTooManyKeys(t *testing.T) {
	eachFS(t, server.Options{}, func(t *testing.T, e *fsEnv) {
		e.seed(t)
		var rows []wire.Row
		for i := range server.MaxPrincipalKeys {
			rows = append(rows, membership(fmt.Sprintf("m-bob-%d", i), "bob", fmt.Sprintf("T%d", i)))
		}
		e.write(t, rows...) // with user:bob and team:B, one more than the most
		bob := e.device(t, "bob")
		_, err := bob.Co.SyncNow(ctx)
		if !errors.Is(err, wire.ErrForbidden) || !strings.Contains(err.Error(), fmt.Sprint(server.MaxPrincipalKeys+2)) {
			t.Errorf("bob's sync: %v; want it refused, naming his %d keys", err, server.MaxPrincipalKeys+2)
		}
		if live, _ := deviceRows(t, bob); len(live["projects"])+len(live["tasks"])+len(live["notes"]) > 0 {
			t.Errorf("bob's device holds %v", live)
		}
		ada := e.device(t, "ada")
		ada.Sync(t)
		e.checkHolds(t, ada, "ada")
	})
}

// server.New refuses scopes that could leave a child on a device without
// its parent, and scopes naming what the schema does not hold (issue 20,
// item 1).
func TestScopesConfig(t *testing.T) {
	reg := fsRegistry(t)
	principal := server.PrincipalKeys(server.UserKey("user:"), server.TableKeys("memberships", "user_id", "team:", "team_id"))
	with := func(change func(map[string]server.RowKeys)) *server.Scopes {
		sc := fsScopes()
		change(sc.Tables)
		return sc
	}
	cases := []struct {
		name   string
		scopes *server.Scopes
		want   []string // in the error; none: accepted
	}{
		{"the issue's", fsScopes(), nil},
		{"child not scoped", with(func(m map[string]server.RowKeys) { delete(m, "tasks") }), []string{"tasks", "projects"}},
		{"child scoped by a column", with(func(m map[string]server.RowKeys) { m["tasks"] = server.KeyColumn("team:", "title") }), []string{"tasks", "projects"}},
		{"unknown table", with(func(m map[string]server.RowKeys) { m["invoices"] = server.KeyColumn("user:", "owner_id") }), []string{"invoices"}},
		{"unknown column", with(func(m map[string]server.RowKeys) { m["projects"] = server.KeyColumn("team:", "squad_id") }), []string{"squad_id"}},
		{"parent column not a reference", with(func(m map[string]server.RowKeys) { m["notes"] = server.KeyParent("title") }), []string{"notes", "title"}},
		{"parent not scoped", with(func(m map[string]server.RowKeys) { m["projects"] = server.KeyParent("team_id") }), []string{"teams"}},
		{"unknown principal table", &server.Scopes{Tables: fsScopes().Tables,
			Principal: server.PrincipalKeys(server.TableKeys("crews", "user_id", "team:", "team_id"))}, []string{"crews"}},
		{"unknown principal column", &server.Scopes{Tables: fsScopes().Tables,
			Principal: server.PrincipalKeys(server.TableKeys("memberships", "uid", "team:", "team_id"))}, []string{"uid"}},
		{"no principal keys", &server.Scopes{Tables: fsScopes().Tables}, []string{"Principal"}},
		{"one table scoped", &server.Scopes{Tables: map[string]server.RowKeys{"notes": server.KeyColumn("user:", "owner_id")}, Principal: principal}, nil},
	}
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		store := db.Open(t, reg.Schema(), stores.Options{})
		for _, c := range cases {
			srv, err := server.New(store, server.Options{Auth: fsTokens, Scopes: c.scopes})
			if err == nil {
				srv.Close()
			}
			switch {
			case c.want == nil && err != nil:
				t.Errorf("%s: %v, want accepted", c.name, err)
			case c.want != nil && err == nil:
				t.Errorf("%s: accepted, want refused naming %v", c.name, c.want)
			case err != nil:
				for _, w := range c.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%s: %q does not name %q", c.name, err, w)
					}
				}
			}
		}
	})
}
