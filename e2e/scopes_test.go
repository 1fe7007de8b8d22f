package e2e

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// The rows of team A that ada holds at the start.
var teamARows = [][2]string{{"projects", "pA1"}, {"projects", "pA2"}, {"tasks", "tA1a"}, {"tasks", "tA1b"}, {"tasks", "tA2a"}}

// Each device holds exactly what its user may see: its teams' projects and
// their tasks, its own notes and memberships, every team; pulls, Verify and
// snapshots agree; changes in other teams bring nothing (issue 20, items 1
// and 2).
func TestScopesVisibility(t *testing.T) {
	eachFS(t, server.Options{}, func(t *testing.T, e *fsEnv) {
		e.seed(t)
		want := e.visible(t, "ada")
		if ids(want, "projects") != "pA1,pA2" || ids(want, "tasks") != "tA1a,tA1b,tA2a" || ids(want, "notes") != "nAda1,nAda2" ||
			ids(want, "memberships") != "m-ada-A" || ids(want, "teams") != "A,B,C,D" {
			t.Fatalf("what ada may see, from the server's tables: %v", want)
		}
		ada, bob := e.device(t, "ada"), e.device(t, "bob")
		if rep := ada.Sync(t); rep.Pulled["projects"] != 2 || rep.Pulled["tasks"] != 3 || rep.Pulled["notes"] != 2 {
			t.Errorf("ada's first sync pulled %v, want 2 projects, 3 tasks, 2 notes", rep.Pulled)
		}
		bob.Sync(t)
		e.checkHolds(t, ada, "ada")
		e.checkHolds(t, bob, "bob")
		for user, d := range map[string]*testkit.Device{"ada": ada, "bob": bob} {
			want := e.visible(t, user)
			got := snapshotRows(t, d)
			for _, table := range fsTables {
				if !slices.Equal(got[table], want[table]) {
					t.Errorf("%s's snapshot holds %s %v, want %v", user, table, got[table], want[table])
				}
			}
		}

		// A pull that does not name its device cannot be scoped: refused.
		if ch, err := ada.API.Changes(ctx, "", "", 100, nil); err == nil {
			t.Errorf("a pull naming no device got %d rows, want it refused", len(ch.Changes))
		}

		// Changes in team B and to bob's notes: ada's next pull brings
		// nothing; bob's brings them.
		e.write(t, project("pB1", "B", "B one renamed"), task("tB1c", "pB1", "c"), note("nBob2", "bob", "bob's second"))
		if rep := ada.Sync(t); pulledTotal(rep) != 0 {
			t.Errorf("ada's pull after changes in team B brought %v, want nothing", rep.Pulled)
		}
		if rep := bob.Sync(t); pulledTotal(rep) != 3 {
			t.Errorf("bob's pull after changes in team B brought %v, want 3 rows", rep.Pulled)
		}
		e.checkHolds(t, ada, "ada")
		e.checkHolds(t, bob, "bob")

		// A change to a row of each: each device gets its own.
		e.write(t, task("tA1a", "pA1", "a edited"), note("nBob1", "bob", "bob's edited"))
		if rep := ada.Sync(t); rep.Pulled["tasks"] != 1 || pulledTotal(rep) != 1 {
			t.Errorf("ada pulled %v, want the task of team A only", rep.Pulled)
		}
		bob.Sync(t)
		e.checkHolds(t, ada, "ada")
		e.checkHolds(t, bob, "bob")
	})
}

// Live events wake only the devices whose user may see what changed
// (issue 20, item 2).
func TestScopesLiveEvents(t *testing.T) {
	eachFS(t, server.Options{}, func(t *testing.T, e *fsEnv) {
		e.seed(t)
		ada := e.device(t, "ada")
		ada.Sync(t)
		sctx, cancel := context.WithCancel(ctx)
		opened := make(chan struct{}, 1)
		events := make(chan wire.Event, 100)
		done := make(chan error, 1)
		go func() {
			done <- ada.API.Events(sctx, func() { opened <- struct{}{} }, func(ev wire.Event) { events <- ev })
		}()
		t.Cleanup(func() {
			cancel()
			<-done
		})
		select {
		case <-opened:
		case err := <-done:
			t.Fatalf("ada's event stream: %v", err)
		case <-time.After(20 * time.Second):
			t.Fatal("ada's event stream did not open within 20s")
		}
		vB := e.write(t, project("pB1", "B", "B one renamed"))
		vNote := e.write(t, note("nBob1", "bob", "bob's edited"))
		vA := e.write(t, project("pA1", "A", "A one renamed"))
		if vB >= vA || vNote >= vA {
			t.Fatalf("versions %d, %d, %d: want them in commit order", vB, vNote, vA)
		}
		select {
		case ev := <-events:
			if ev.Version != vA {
				t.Errorf("ada's first event is for version %d, want %d (team A's change): versions %d and %d are team B's and bob's note", ev.Version, vA, vB, vNote)
			}
		case err := <-done:
			t.Fatalf("ada's event stream ended: %v", err)
		case <-time.After(20 * time.Second):
			t.Fatal("no event for ada within 20s after a change in her team")
		}
	})
}

// Gaining a key brings every live row of it at the next pull, rows far
// below the device's cursor included, without a rebuild and without
// sending again what the device holds; a row moved into a held key
// arrives with its children (issue 20, item 3).
func TestScopesGrant(t *testing.T) {
	eachFS(t, server.Options{}, func(t *testing.T, e *fsEnv) {
		e.seed(t)
		ada := e.device(t, "ada")
		ada.Sync(t)
		// Team B's rows are now far below ada's cursor.
		for i := range 3 {
			e.write(t, task(fmt.Sprintf("tA1-%d", i), "pA1", "later"))
			ada.Sync(t)
		}

		e.write(t, membership("m-ada-B", "ada", "B"))
		rep := ada.Sync(t)
		if rep.Rebuilt {
			t.Error("ada's device rebuilt to get team B's rows")
		}
		if rep.Pulled["memberships"] != 1 || rep.Pulled["projects"] != 2 || rep.Pulled["tasks"] != 3 || pulledTotal(rep) != 6 {
			t.Errorf("the grant's pull brought %v; want the membership, team B's 2 projects and 3 tasks, nothing ada held", rep.Pulled)
		}
		e.checkHolds(t, ada, "ada")
		for _, id := range []string{"pB1", "pB2"} {
			if !holds(t, ada, "projects", id) {
				t.Errorf("project %s of team B not on ada's device after the grant", id)
			}
		}

		// A project moved between two teams ada holds is an update: nothing
		// leaves. (Its task, whose keys changed, comes again.)
		e.write(t, project("pB2", "A", "B two, now A's"))
		rep = ada.Sync(t)
		if n := evicted(t, rep); n != 0 || rep.Pulled["projects"] != 1 || rep.Pulled["tasks"] > 1 {
			t.Errorf("a move from B to A evicted %d rows and pulled %v; want the project (and at most its task)", n, rep.Pulled)
		}
		e.checkHolds(t, ada, "ada")

		// A project moved from team C into team A comes with its task.
		e.write(t, project("pC1", "A", "C one, now A's"))
		rep = ada.Sync(t)
		if rep.Rebuilt {
			t.Error("ada's device rebuilt to get a project moved into team A")
		}
		if rep.Pulled["projects"] != 1 || rep.Pulled["tasks"] != 1 || pulledTotal(rep) != 2 {
			t.Errorf("the move's pull brought %v; want the project and its task", rep.Pulled)
		}
		if !holds(t, ada, "tasks", "tC1a") {
			t.Error("the task of the project moved into team A is not on ada's device")
		}
		e.checkHolds(t, ada, "ada")

		// Ada cannot join team D from her device: memberships give keys,
		// only the back office writes them.
		e.write(t, project("pD1", "D", "D one"), task("tD1a", "pD1", "a"))
		save(t, ada, &fsMembership{ID: "m-ada-D", UserID: "ada", TeamID: "D"})
		rep = ada.Sync(t)
		if c, ok := forbidden(t, ada)["memberships m-ada-D"]; !ok || c.Reason == "" || c.Local.Values["team_id"] != "D" {
			t.Errorf("ada's conflict log %+v; want her membership of D refused", openConflicts(t, ada))
		}
		if _, ok := e.serverRows(t, "memberships", "id")["m-ada-D"]; ok || holds(t, ada, "projects", "pD1") || holds(t, ada, "memberships", "m-ada-D") {
			t.Error("ada's own membership of D was applied")
		}
		e.checkHolds(t, ada, "ada")

		// A grant and a change in the same pull: both arrive, once.
		e.write(t, membership("m-ada-C", "ada", "C"), project("pC2", "C", "C two"), task("tC2a", "pC2", "a"))
		e.write(t, task("tB1a", "pB1", "a edited"))
		rep = ada.Sync(t)
		if rep.Pulled["tasks"] != 2 || rep.Pulled["projects"] != 1 {
			t.Errorf("pull brought %v; want team C's new project and task, and the edited task of B", rep.Pulled)
		}
		e.checkHolds(t, ada, "ada")
	})
}

// Losing a key removes its rows from the device at the next pull:
// physically, with nothing pushed and nothing logged, counted in
// Report.Evicted; rows still seen through a key held stay; a project moved
// out of a team leaves with its tasks (issue 20, item 4).
func TestScopesRevoke(t *testing.T) {
	eachFS(t, server.Options{}, func(t *testing.T, e *fsEnv) {
		e.seed(t)
		e.write(t, membership("m-ada-B", "ada", "B"), membership("m-ada-B2", "ada", "B"))
		ada, bob := e.device(t, "ada"), e.device(t, "bob")
		ada.Sync(t)
		bob.Sync(t)
		e.checkHolds(t, ada, "ada")

		// One of two memberships in B goes: ada still holds team:B.
		e.write(t, deleted(membership("m-ada-B2", "ada", "B")))
		rep := ada.Sync(t)
		if n := evicted(t, rep); n != 0 {
			t.Errorf("Evicted = %d after a membership whose key ada still holds went, want 0", n)
		}
		e.checkHolds(t, ada, "ada")

		// Team A goes.
		e.write(t, deleted(membership("m-ada-A", "ada", "A")))
		rep = ada.Sync(t)
		if n := evicted(t, rep); n != len(teamARows) {
			t.Errorf("Evicted = %d, want team A's %d rows", n, len(teamARows))
		}
		if rep.Rebuilt {
			t.Error("ada's device rebuilt to lose team A")
		}
		for _, r := range teamARows {
			if holds(t, ada, r[0], r[1]) {
				t.Errorf("%s %s of team A still on ada's device (live or as a tombstone)", r[0], r[1])
			}
		}
		if len(rep.Pushed) != 0 {
			t.Errorf("ada's device pushed %v after the revocation, want nothing", rep.Pushed)
		}
		if log := openConflicts(t, ada); len(log) != 0 {
			t.Errorf("ada's conflict log has %d entries after the revocation, want none: %+v", len(log), log)
		}
		e.checkHolds(t, ada, "ada")
		if rep := ada.Sync(t); len(rep.Pushed) != 0 || evicted(t, rep) != 0 {
			t.Errorf("the next sync pushed %v, evicted %d; want nothing", rep.Pushed, evicted(t, rep))
		}
		// The rows stay on the server, and for whoever may see them.
		if got := e.serverRows(t, "projects", "team_id"); got["pA1"] != "A" || got["pA2"] != "A" {
			t.Errorf("server projects %v; want team A's still there", got)
		}

		// A project moved out of team B leaves ada's and bob's devices
		// with its tasks; team B's other project stays.
		e.write(t, project("pB1", "C", "B one, now C's"))
		for user, d := range map[string]*testkit.Device{"ada": ada, "bob": bob} {
			rep := d.Sync(t)
			if n := evicted(t, rep); n != 3 {
				t.Errorf("Evicted = %d on %s's device, want the project and its 2 tasks", n, user)
			}
			for _, id := range []string{"pB1", "tB1a", "tB1b"} {
				table := map[byte]string{'p': "projects", 't': "tasks"}[id[0]]
				if holds(t, d, table, id) {
					t.Errorf("%s %s, moved out of team B, still on %s's device", table, id, user)
				}
			}
			if !holds(t, d, "projects", "pB2") || !holds(t, d, "tasks", "tB2a") {
				t.Errorf("team B's other project or its task left %s's device", user)
			}
			if log := openConflicts(t, d); len(log) != 0 {
				t.Errorf("%s's conflict log has %d entries, want none", user, len(log))
			}
			e.checkHolds(t, d, user)
		}

		// A task moved to a project of team C leaves; one moved from team C
		// into team B arrives.
		e.write(t, task("tB2a", "pC1", "a, now under C"), task("tC1a", "pB2", "a, now under B"))
		rep = ada.Sync(t)
		if n := evicted(t, rep); n != 1 || rep.Pulled["tasks"] != 1 {
			t.Errorf("the task moves evicted %d and pulled %v; want tB2a evicted and tC1a pulled", n, rep.Pulled)
		}
		if holds(t, ada, "tasks", "tB2a") || !holds(t, ada, "tasks", "tC1a") {
			t.Error("want tB2a gone from ada's device and tC1a on it")
		}
		e.checkHolds(t, ada, "ada")

		// Team A again: every row of it comes back, though ada's cursor is
		// past them all.
		e.write(t, membership("m-ada-A2", "ada", "A"))
		rep = ada.Sync(t)
		if rep.Rebuilt || rep.Pulled["projects"] != 2 || rep.Pulled["tasks"] != 3 {
			t.Errorf("team A granted again pulled %v (rebuilt %v); want its 2 projects and 3 tasks", rep.Pulled, rep.Rebuilt)
		}
		for _, r := range teamARows {
			if !holds(t, ada, r[0], r[1]) {
				t.Errorf("%s %s of team A not back on ada's device", r[0], r[1])
			}
		}
		e.checkHolds(t, ada, "ada")
	})
}

// A device offline while its user gains and loses keys, and rows move
// between teams, ends with exactly the rows its user may see at its next
// sync, without a rebuild (issue 20, items 3 and 4).
func TestScopesOfflineDevice(t *testing.T) {
	eachFS(t, server.Options{}, func(t *testing.T, e *fsEnv) {
		e.seed(t)
		a1, a2 := e.device(t, "ada"), e.device(t, "ada")
		// a3 pulls a row a page, and loses the answers of some pulls: the
		// grant's and the eviction's pages resume where they stopped.
		lossy := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
			if kind == "changes" && n > 0 && n%4 == 2 {
				return testkit.DropResponse
			}
			return testkit.Pass
		}}
		a3 := e.deviceWith(t, "ada", testkit.DeviceOptions{Transport: lossy, Co: coordinator.Options{PullBatchSize: 1}})
		a1.Sync(t)
		a2.Sync(t)
		a3.Sync(t)

		// a2 and a3 are offline from here.
		e.write(t, membership("m-ada-B", "ada", "B"))
		a1.Sync(t)
		e.write(t, membership("m-ada-C", "ada", "C"), task("tC1b", "pC1", "b"))
		a1.Sync(t)
		e.write(t, deleted(membership("m-ada-A", "ada", "A")), deleted(membership("m-ada-C", "ada", "C")))
		e.write(t, project("pB2", "D", "B two, now D's"), project("pC1", "B", "C one, now B's"), project("pA2", "B", "A two, now B's"))
		e.write(t, task("tA1a", "pA1", "edited in A"), deleted(task("tB1b", "pB1", "b")))
		a1.Sync(t)
		e.checkHolds(t, a1, "ada")

		rep := a2.Sync(t)
		if rep.Rebuilt {
			t.Error("the device back online rebuilt, want a pull")
		}
		// It held pA1, pA2 and their 3 tasks; pA2 and tA2a it keeps (now B's).
		if n := evicted(t, rep); n < 3 {
			t.Errorf("Evicted = %d, want at least pA1, tA1a, tA1b", n)
		}
		for _, r := range [][2]string{{"projects", "pA1"}, {"tasks", "tA1a"}, {"tasks", "tA1b"}, {"projects", "pB2"}, {"tasks", "tB2a"}} {
			if holds(t, a2, r[0], r[1]) {
				t.Errorf("%s %s, which ada may no longer see, is on the device back online", r[0], r[1])
			}
		}
		for _, r := range [][2]string{{"projects", "pA2"}, {"tasks", "tA2a"}, {"projects", "pC1"}, {"tasks", "tC1a"}, {"tasks", "tC1b"}, {"projects", "pB1"}} {
			if !holds(t, a2, r[0], r[1]) {
				t.Errorf("%s %s, which ada may see, is not on the device back online", r[0], r[1])
			}
		}
		if log := openConflicts(t, a2); len(log) != 0 {
			t.Errorf("conflict log of the device back online: %+v, want none", log)
		}
		e.checkHolds(t, a2, "ada")
		e.checkHolds(t, a1, "ada")

		if rep := a3.Sync(t); rep.Rebuilt {
			t.Error("the device pulling a row a page rebuilt")
		}
		if lossy.Count("changes") < 10 {
			t.Errorf("%d pulls, want a row a page", lossy.Count("changes"))
		}
		e.checkHolds(t, a3, "ada")
		if log := openConflicts(t, a3); len(log) != 0 {
			t.Errorf("conflict log of the device pulling a row a page: %+v, want none", log)
		}
	})
}

// A device away past the purge horizon while its user's keys change
// rebuilds from a snapshot holding exactly the rows its user may see; its
// offline edit of a row it may no longer see is refused and logged, its
// edit of its own note goes up (issue 20, item 4).
func TestScopesPastPurge(t *testing.T) {
	lim := server.Limits{DeviceActivity: time.Hour}
	eachFS(t, server.Options{Limits: lim, SweepInterval: -1}, func(t *testing.T, e *fsEnv) {
		e.seed(t)
		a1, away := e.device(t, "ada"), e.device(t, "ada")
		a1.Sync(t)
		away.Sync(t)

		// Offline edits of the away device.
		var tk fsTask
		if err := away.DB.Get(ctx, &tk, "tA1a"); err != nil {
			t.Fatal(err)
		}
		tk.Title = "edited away"
		var n fsNote
		if err := away.DB.Get(ctx, &n, "nAda1"); err != nil {
			t.Fatal(err)
		}
		n.Title = "edited away"
		save(t, away, &tk, &n)

		// Ada moves from team A to team B; deletions leave tombstones.
		e.write(t, deleted(membership("m-ada-A", "ada", "A")), membership("m-ada-B", "ada", "B"))
		e.write(t, deleted(task("tB1b", "pB1", "b")), deleted(note("nAda2", "ada", "ada's second")))
		a1.Sync(t)
		e.write(t, task("tB1c", "pB1", "c"))
		for range 4 { // a pull proves the one before it
			a1.Sync(t)
		}
		e.clock.Advance(2 * lim.DeviceActivity)
		if rep := a1.Sync(t); rep.Rebuilt {
			t.Error("the active device was rebuilt")
		}
		if n, err := e.store.Sweep(ctx, lim, 1000); err != nil || n < 3 {
			t.Fatalf("sweep: %d, %v; want the tombstones purged", n, err)
		}

		rep := away.Sync(t)
		if !rep.Rebuilt {
			t.Error("the device back after the purge was not rebuilt")
		}
		for _, r := range teamARows {
			if holds(t, away, r[0], r[1]) {
				t.Errorf("%s %s of team A still on the device rebuilt", r[0], r[1])
			}
		}
		for _, id := range []string{"pB1", "pB2"} {
			if !holds(t, away, "projects", id) {
				t.Errorf("project %s of team B not on the device rebuilt", id)
			}
		}
		log := forbidden(t, away)
		if c, ok := log["tasks tA1a"]; !ok || c.Local.Values["title"] != "edited away" || c.Reason == "" {
			t.Errorf("the away device's conflict log %+v; want its edit of tA1a refused, with its values and a reason", log)
		}
		if got := e.serverRows(t, "tasks", "title"); got["tA1a"] != "a" {
			t.Errorf("tA1a on the server is titled %q, want the refused edit not applied", got["tA1a"])
		}
		if got := e.serverRows(t, "notes", "title"); got["nAda1"] != "edited away" {
			t.Errorf("nAda1 on the server is titled %q, want the away device's edit", got["nAda1"])
		}
		e.checkHolds(t, away, "ada")
		a1.Sync(t)
		e.checkHolds(t, a1, "ada")
	})
}

// Keys from the token's claims: a principal with no membership sees the
// teams its token names (issue 20, item 1).
func TestScopesClaimKeys(t *testing.T) {
	sc := fsScopes()
	sc.Principal = append(sc.Principal, server.ClaimKeys("teams", "team:"))
	eachScoped(t, fsRegistry(t), server.Options{Scopes: sc}, func(t *testing.T, e *fsEnv) {
		e.seed(t)
		cy := e.device(t, "cy")
		cy.Sync(t)
		want := map[string][]string{"teams": {"A", "B", "C", "D"}, "projects": {"pC1"}, "tasks": {"tC1a"}}
		live, _ := deviceRows(t, cy)
		snap := snapshotRows(t, cy)
		for _, table := range fsTables {
			if !slices.Equal(live[table], want[table]) {
				t.Errorf("cy's device holds %s %v, want %v", table, live[table], want[table])
			}
			if !slices.Equal(snap[table], want[table]) {
				t.Errorf("cy's snapshot holds %s %v, want %v", table, snap[table], want[table])
			}
		}
		rep, err := cy.Co.Verify(ctx)
		if err != nil || len(rep.Differs()) > 0 {
			t.Errorf("cy's Verify: %v differ, %v", rep.Differs(), err)
		}
		// Cy writes in team C, not in team A.
		save(t, cy, &fsTask{ID: "tC1b", ProjectID: "pC1", Title: "cy's"}, &fsProject{ID: "pCy", TeamID: "A", Name: "cy's in A"})
		cy.Sync(t)
		if tasks := e.serverRows(t, "tasks", "title"); tasks["tC1b"] != "cy's" {
			t.Error("cy's task in team C is not on the server")
		}
		if _, ok := e.serverRows(t, "projects", "id")["pCy"]; ok {
			t.Error("cy's project in team A is on the server")
		}
		if log := forbidden(t, cy); len(log) != 1 {
			t.Errorf("cy's forbidden entries %v, want the project in team A", log)
		}
	})
}

// fsSharedNote is a note its owner may share with a team.
type fsSharedNote struct {
	entity.Meta `sync:"notes,5"`
	ID          string  `db:"id"`
	OwnerID     string  `db:"owner_id"`
	TeamID      *string `db:"team_id"`
	Title       string  `db:"title"`
}

func sharedNote(id, owner string, team any) wire.Row {
	return wire.Row{Table: "notes", ID: id, Values: map[string]any{"owner_id": owner, "team_id": team, "title": id}}
}

// A note shared with a team carries two keys, its owner's and the team's
// (KeyFunc): it stays on the devices that still hold either, leaves when
// neither is held, and comes back with a grant without the rows the device
// holds through another key being sent again (issue 20, items 3 and 4).
func TestScopesSharedRows(t *testing.T) {
	reg := registry(t, fsTeam{}, fsMembership{}, fsProject{}, fsTask{}, fsSharedNote{})
	sc := fsScopes()
	sc.Tables["notes"] = server.KeyFunc(func(v map[string]any) []string {
		var keys []string
		if o, ok := v["owner_id"].(string); ok {
			keys = append(keys, "user:"+o)
		}
		if tm, ok := v["team_id"].(string); ok {
			keys = append(keys, "team:"+tm)
		}
		return keys
	})
	eachScoped(t, reg, server.Options{Scopes: sc}, func(t *testing.T, e *fsEnv) {
		e.write(t, team("A"), team("B"),
			membership("m-ada-A", "ada", "A"), membership("m-ada-B", "ada", "B"),
			project("pA1", "A", "A one"), project("pB1", "B", "B one"),
			sharedNote("n1", "bob", "A"), sharedNote("n2", "ada", "B"), sharedNote("n3", "bob", "B"), sharedNote("n4", "bob", nil))
		ada := e.device(t, "ada")
		notes := func(want ...string) {
			t.Helper()
			live, _ := deviceRows(t, ada)
			if !slices.Equal(live["notes"], want) {
				t.Errorf("ada's device holds notes %v, want %v", live["notes"], want)
			}
			rep, err := ada.Co.Verify(ctx)
			if err != nil || len(rep.Differs()) > 0 {
				t.Errorf("ada's Verify: %v differ, %v", rep.Differs(), err)
			}
		}
		ada.Sync(t)
		notes("n1", "n2", "n3")

		e.write(t, deleted(membership("m-ada-A", "ada", "A")))
		if n := evicted(t, ada.Sync(t)); n != 2 {
			t.Errorf("Evicted = %d after team A went, want pA1 and n1", n)
		}
		notes("n2", "n3")
		e.write(t, deleted(membership("m-ada-B", "ada", "B")))
		if n := evicted(t, ada.Sync(t)); n != 2 {
			t.Errorf("Evicted = %d after team B went, want pB1 and n3; n2 is ada's own", n)
		}
		notes("n2")

		e.write(t, membership("m-ada-B3", "ada", "B"))
		rep := ada.Sync(t)
		if rep.Pulled["notes"] != 1 || rep.Pulled["projects"] != 1 || rep.Rebuilt {
			t.Errorf("the grant of B again pulled %v (rebuilt %v); want pB1 and n3, not n2 which ada holds as hers", rep.Pulled, rep.Rebuilt)
		}
		notes("n2", "n3")

		// Unshared, ada's note stays hers; bob's note moved to team A leaves.
		e.write(t, sharedNote("n2", "ada", nil), sharedNote("n3", "bob", "A"))
		if n := evicted(t, ada.Sync(t)); n != 1 {
			t.Errorf("Evicted = %d, want n3 only", n)
		}
		notes("n2")
		if log := openConflicts(t, ada); len(log) != 0 {
			t.Errorf("ada's conflict log: %+v, want none", log)
		}
	})
}

// A row edited on the device while the pull that evicts it is on the wire
// is removed all the same, and its edit is in the conflict log (strategy
// forbidden): it could not have been accepted, and never vanishes
// silently (issue 20, item 4).
func TestScopesEvictDirtyRow(t *testing.T) {
	eachFS(t, server.Options{}, func(t *testing.T, e *fsEnv) {
		e.seed(t)
		var during atomic.Pointer[func()]
		ft := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
			if f := during.Swap(nil); f != nil && kind == "changes" {
				(*f)()
			}
			return testkit.Pass
		}}
		ada := e.deviceWith(t, "ada", testkit.DeviceOptions{Transport: ft})
		ada.Sync(t)
		e.write(t, deleted(membership("m-ada-A", "ada", "A")))
		edit := func() {
			var tk fsTask
			if err := ada.DB.Get(ctx, &tk, "tA1a"); err != nil {
				t.Error(err)
				return
			}
			tk.Title = "edited during the pull"
			if err := ada.DB.Save(ctx, &tk); err != nil {
				t.Error(err)
			}
		}
		during.Store(&edit)
		rep := ada.Sync(t)
		if during.Load() != nil {
			t.Fatal("no pull went out")
		}
		if n := evicted(t, rep); n != len(teamARows) {
			t.Errorf("Evicted = %d, want team A's %d rows", n, len(teamARows))
		}
		for _, r := range teamARows {
			if holds(t, ada, r[0], r[1]) {
				t.Errorf("%s %s of team A still on ada's device", r[0], r[1])
			}
		}
		log := forbidden(t, ada)
		if c, ok := log["tasks tA1a"]; !ok || c.Local.Values["title"] != "edited during the pull" {
			t.Errorf("ada's conflict log %+v; want her edit of tA1a, evicted, recorded as forbidden with its values", log)
		}
		if len(openConflicts(t, ada)) != 1 {
			t.Errorf("ada's conflict log: %+v, want the one entry", openConflicts(t, ada))
		}
		if rep := ada.Sync(t); len(rep.Pushed) != 0 {
			t.Errorf("the next sync pushed %v, want nothing", rep.Pushed)
		}
		if got := e.serverRows(t, "tasks", "title")["tA1a"]; got != "a" {
			t.Errorf("tA1a on the server is titled %q, want it untouched", got)
		}
		e.checkHolds(t, ada, "ada")
	})
}

// Memberships granted and revoked, projects and tasks moved between teams
// and projects, and devices' edits, in a random order of a fixed seed:
// after each of its syncs, each device holds exactly what its user may
// see (issue 20, items 3 and 4).
func TestScopesChurn(t *testing.T) {
	eachFS(t, server.Options{}, func(t *testing.T, e *fsEnv) {
		e.seed(t)
		seed := uint64(20)
		if v, err := strconv.ParseUint(os.Getenv("TETHER_CHURN_SEED"), 10, 64); err == nil {
			seed = v // another run: TETHER_CHURN_SEED=n go test ./e2e -run TestScopesChurn
		}
		rng := rand.New(rand.NewPCG(seed, 4))
		type dev struct {
			user string
			d    *testkit.Device
		}
		devs := []dev{
			{"ada", e.device(t, "ada")},
			{"ada", e.deviceWith(t, "ada", testkit.DeviceOptions{Co: coordinator.Options{PullBatchSize: 2}})},
			{"bob", e.device(t, "bob")},
			{"bob", e.deviceWith(t, "bob", testkit.DeviceOptions{Co: coordinator.Options{PullBatchSize: 1}})},
		}
		for _, d := range devs {
			d.d.Sync(t)
		}
		teams := []string{"A", "B", "C", "D"}
		pick := func(m map[string]string) string {
			keys := slices.Sorted(maps.Keys(m))
			if len(keys) == 0 {
				return ""
			}
			return keys[rng.IntN(len(keys))]
		}
		for step := range 60 {
			switch op := rng.IntN(6); op {
			case 0: // a membership granted
				user := []string{"ada", "bob"}[rng.IntN(2)]
				team := teams[rng.IntN(len(teams))]
				e.write(t, membership(fmt.Sprintf("m-%s-%s-%d", user, team, step), user, team))
			case 1: // a membership revoked
				users := e.serverRows(t, "memberships", "user_id")
				if id := pick(users); id != "" {
					e.write(t, deleted(membership(id, users[id], e.serverRows(t, "memberships", "team_id")[id])))
				}
			case 2: // a project moved
				names := e.serverRows(t, "projects", "name")
				if id := pick(names); id != "" {
					e.write(t, project(id, teams[rng.IntN(len(teams))], names[id]))
				}
			case 3: // a task moved, or a new one
				titles := e.serverRows(t, "tasks", "title")
				p := pick(e.serverRows(t, "projects", "id"))
				if id := pick(titles); id != "" && rng.IntN(2) == 0 {
					e.write(t, task(id, p, titles[id]))
				} else {
					e.write(t, task(fmt.Sprintf("t-%d", step), p, "new"))
				}
			case 4: // a device edits a task it holds
				d := devs[rng.IntN(len(devs))]
				live, _ := deviceRows(t, d.d)
				if ts := live["tasks"]; len(ts) > 0 {
					var tk fsTask
					if err := d.d.DB.Get(ctx, &tk, ts[rng.IntN(len(ts))]); err != nil {
						t.Fatal(err)
					}
					tk.Title = fmt.Sprintf("edited at %d", step)
					save(t, d.d, &tk)
				}
			default: // a device syncs
				d := devs[rng.IntN(len(devs))]
				d.d.Sync(t)
				e.checkHolds(t, d.d, d.user)
				if t.Failed() {
					t.Fatalf("step %d: %s's device after its sync", step, d.user)
				}
			}
		}
		for _, d := range devs {
			d.d.Sync(t)
			e.checkHolds(t, d.d, d.user)
		}
	})
}

// hook runs a function, once, before a request of a kind, after letting
// a number of them through.
type hook struct {
	kind  string
	after atomic.Int64
	f     atomic.Pointer[func()]
}

// arm makes f run before the request of h's kind after the next after.
func (h *hook) arm(after int, f func()) {
	h.after.Store(int64(after))
	h.f.Store(&f)
}

// fired reports whether the armed function ran.
func (h *hook) fired() bool { return h.f.Load() == nil }

func (h *hook) transport() *testkit.FaultTransport {
	return &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
		if kind == h.kind && h.f.Load() != nil && h.after.Add(-1) < 0 {
			if f := h.f.Swap(nil); f != nil {
				(*f)()
			}
		}
		return testkit.Pass
	}}
}

// moreRows gives teams A and B four more projects each, with a task each:
// pulls and snapshots of a row a page take many pages.
func (e *fsEnv) moreRows(t *testing.T) {
	t.Helper()
	var rows []wire.Row
	for _, team := range []string{"A", "B"} {
		for i := range 4 {
			p := fmt.Sprintf("p%s-%d", team, i)
			rows = append(rows, project(p, team, p), task("t"+p[1:], p, "x"))
		}
	}
	e.write(t, rows...)
}

// Keys change while a device pulls a grant a row a page: the next sync
// ends with exactly what its user may see (issue 20, items 3 and 4).
func TestScopesKeysChangeDuringPull(t *testing.T) {
	eachFS(t, server.Options{}, func(t *testing.T, e *fsEnv) {
		e.seed(t)
		e.moreRows(t)
		h := &hook{kind: "changes"}
		ada := e.deviceWith(t, "ada", testkit.DeviceOptions{Transport: h.transport(), Co: coordinator.Options{PullBatchSize: 1}})
		ada.Sync(t)
		e.write(t, membership("m-ada-B", "ada", "B"))
		h.arm(4, func() { // in the middle of the grant's pages
			e.write(t, deleted(membership("m-ada-A", "ada", "A")), membership("m-ada-C", "ada", "C"),
				project("pB1", "C", "B one, now C's"), project("pB-0", "D", "to D"), project("pA-0", "B", "A to B"))
		})
		ada.Sync(t)
		if !h.fired() {
			t.Fatal("the keys did not change during the pull")
		}
		ada.Sync(t)
		e.checkHolds(t, ada, "ada")
	})
}

// Keys change while a device past the purge horizon reads its snapshot a
// row a page: it ends with exactly what its user may see (issue 20,
// item 4).
func TestScopesKeysChangeDuringRebuild(t *testing.T) {
	lim := server.Limits{DeviceActivity: time.Hour}
	eachFS(t, server.Options{Limits: lim, SweepInterval: -1}, func(t *testing.T, e *fsEnv) {
		e.seed(t)
		e.moreRows(t)
		e.write(t, membership("m-ada-B", "ada", "B"))
		h := &hook{kind: "snapshot"}
		a1 := e.device(t, "ada")
		away := e.deviceWith(t, "ada", testkit.DeviceOptions{Transport: h.transport(), Co: coordinator.Options{PullBatchSize: 1}})
		a1.Sync(t)
		away.Sync(t)
		e.write(t, deleted(task("tA-1", "pA-1", "x")), deleted(task("tB-1", "pB-1", "x")))
		e.write(t, task("tA-2", "pA-2", "after the deletes"))
		for range 4 {
			a1.Sync(t)
		}
		e.clock.Advance(2 * lim.DeviceActivity)
		a1.Sync(t)
		if n, err := e.store.Sweep(ctx, lim, 1000); err != nil || n < 2 {
			t.Fatalf("sweep: %d, %v; want the tombstones purged", n, err)
		}
		h.arm(5, func() { // in the middle of the snapshot's pages
			e.write(t, deleted(membership("m-ada-A", "ada", "A")), membership("m-ada-C", "ada", "C"),
				project("pB1", "C", "B one, now C's"), project("pB-0", "D", "to D"), project("pA-0", "B", "A to B"))
		})
		if rep := away.Sync(t); !rep.Rebuilt {
			t.Error("the device back after the purge was not rebuilt")
		}
		if !h.fired() {
			t.Fatal("the keys did not change during the rebuild")
		}
		e.checkHolds(t, away, "ada")
		away.Sync(t)
		e.checkHolds(t, away, "ada")
	})
}

// Keys are a tenant's: a team of the same name in another tenant shares
// nothing (issue 20, item 1).
func TestScopesTenants(t *testing.T) {
	eachFS(t, server.Options{}, func(t *testing.T, e *fsEnv) {
		e.seed(t)
		globex := server.Principal{Tenant: "globex", User: "admin"}
		if _, err := e.srv.Write(ctx, globex, []wire.Row{team("A"),
			membership("g-m-gus-A", "gus", "A"), membership("g-m-ada-A", "ada", "A"),
			project("g-pA1", "A", "globex's"), task("g-tA1a", "g-pA1", "globex's"), note("g-n-ada", "ada", "globex's")}); err != nil {
			t.Fatal(err)
		}
		ada, gus := e.device(t, "ada"), e.device(t, "gus")
		ada.Sync(t)
		gus.Sync(t)
		e.checkHolds(t, ada, "ada")
		live, _ := deviceRows(t, gus)
		want := map[string][]string{"teams": {"A"}, "memberships": {"g-m-gus-A"}, "projects": {"g-pA1"}, "tasks": {"g-tA1a"}}
		for _, table := range fsTables {
			if !slices.Equal(live[table], want[table]) {
				t.Errorf("gus's device holds %s %v, want %v", table, live[table], want[table])
			}
		}
		if rep, err := gus.Co.Verify(ctx); err != nil || len(rep.Differs()) > 0 {
			t.Errorf("gus's Verify: %v differ, %v", rep.Differs(), err)
		}
		// Ada leaves acme's team A: globex's membership of an "ada" keeps
		// nothing of acme's on her device.
		e.write(t, deleted(membership("m-ada-A", "ada", "A")))
		ada.Sync(t)
		e.checkHolds(t, ada, "ada")
		if holds(t, ada, "projects", "pA1") {
			t.Error("acme's project of team A stayed on ada's device")
		}
	})
}

// A device in live mode: a grant wakes it, and the rows of the team come
// without a sync being asked for; then a revocation takes them away
// (issue 20, items 2, 3 and 4).
func TestScopesLiveGrant(t *testing.T) {
	eachFS(t, server.Options{}, func(t *testing.T, e *fsEnv) {
		e.seed(t)
		synced := make(chan struct{}, 100)
		ada := e.deviceWith(t, "ada", testkit.DeviceOptions{Co: coordinator.Options{
			LiveDebounce: 20 * time.Millisecond, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
			OnProgress: func(p coordinator.Progress) {
				if p.Phase == coordinator.PhaseDone {
					select {
					case synced <- struct{}{}:
					default:
					}
				}
			},
		}})
		lctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- ada.Co.Live(lctx, time.Hour) }()
		t.Cleanup(func() {
			cancel()
			<-done
		})
		waitSync(t, synced) // the first sync
		waitSync(t, synced) // the sync once the stream is open
		waitFor := func(what string, ok func() bool) {
			t.Helper()
			for range 1000 {
				if ok() {
					return
				}
				select {
				case <-synced:
				case <-time.After(20 * time.Second):
					t.Fatalf("%s: not within 20s", what)
				}
			}
		}
		e.write(t, membership("m-ada-B", "ada", "B"))
		waitFor("team B's rows on ada's device", func() bool { return holds(t, ada, "tasks", "tB2a") })
		e.write(t, deleted(membership("m-ada-A", "ada", "A")))
		waitFor("team A's rows gone from ada's device", func() bool { return !holds(t, ada, "tasks", "tA2a") })
		cancel()
		<-done
		done <- nil
		e.checkHolds(t, ada, "ada")
	})
}
