package e2e

import (
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// The field-service app of issue 20: teams (seen by everyone), the
// memberships of users in teams, projects per team, tasks per project,
// private notes per user.
type fsTeam struct {
	entity.Meta `sync:"teams,1"`
	ID          string `db:"id"`
	Name        string `db:"name"`
}

type fsMembership struct {
	entity.Meta `sync:"memberships,2"`
	ID          string `db:"id"`
	UserID      string `db:"user_id"`
	TeamID      string `db:"team_id"`
}

type fsProject struct {
	entity.Meta `sync:"projects,3"`
	ID          string `db:"id"`
	TeamID      string `db:"team_id,ref=teams"`
	Name        string `db:"name"`
}

type fsTask struct {
	entity.Meta `sync:"tasks,4"`
	ID          string `db:"id"`
	ProjectID   string `db:"project_id,ref=projects"`
	Title       string `db:"title"`
}

type fsNote struct {
	entity.Meta `sync:"notes,5"`
	ID          string `db:"id"`
	OwnerID     string `db:"owner_id"`
	Title       string `db:"title"`
}

// fsTables are the tables of the field-service app, in priority order.
var fsTables = []string{"teams", "memberships", "projects", "tasks", "notes"}

func fsRegistry(t *testing.T) *entity.Registry {
	return registry(t, fsTeam{}, fsMembership{}, fsProject{}, fsTask{}, fsNote{})
}

// fsScopes returns the scopes of the example.
func fsScopes() *server.Scopes {
	return &server.Scopes{
		Tables: map[string]server.RowKeys{
			"projects":    server.KeyColumn("team:", "team_id"),
			"tasks":       server.KeyParent("project_id"),
			"notes":       server.KeyColumn("user:", "owner_id"),
			"memberships": server.KeyColumn("user:", "user_id"),
		},
		Principal: server.PrincipalKeys(
			server.UserKey("user:"),
			server.TableKeys("memberships", "user_id", "team:", "team_id"),
		),
	}
}

// adminPrincipal is the back office's principal.
var adminPrincipal = server.Principal{Tenant: "acme", User: "admin"}

// fsTokens: ada and bob, technicians of tenant acme, and cy, whose token
// names the teams it sees.
var fsTokens = server.StaticTokens{
	"token-ada": {Tenant: "acme", User: "ada"},
	"token-bob": {Tenant: "acme", User: "bob"},
	"token-cy":  {Tenant: "acme", User: "cy", Claims: map[string]any{"teams": []any{"C"}}},
	"token-gus": {Tenant: "globex", User: "gus"},
}

// fsEnv is a scoped server over one store, and its back office.
type fsEnv struct {
	reg   *entity.Registry
	srv   *server.Server
	store server.Store
	db    *sql.DB // the store's database, to compute what each user may see
	url   string
	clock *testkit.Clock
}

// eachFS runs f on a server with the scopes over each store,
// with opts (Auth, Scopes and the clock set here), server and store on one
// fake clock.
func eachFS(t *testing.T, opts server.Options, f func(t *testing.T, e *fsEnv)) {
	opts.Scopes = fsScopes()
	eachScoped(t, fsRegistry(t), opts, f)
}

// eachScoped runs f on a server with opts.Scopes over each store.
func eachScoped(t *testing.T, reg *entity.Registry, opts server.Options, f func(t *testing.T, e *fsEnv)) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		clock := testkit.NewClock()
		store := db.Open(t, reg.Schema(), stores.Options{Now: clock.Now})
		opts := opts
		opts.Auth = fsTokens
		opts.Now = clock.Now
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		srv, err := server.New(store, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		hs := httptest.NewServer(srv)
		t.Cleanup(hs.Close)
		e := &fsEnv{reg: reg, srv: srv, store: store, db: store.(interface{ DB() *sql.DB }).DB(), url: hs.URL, clock: clock}
		f(t, e)
	})
}

// device opens a new device of user ("ada", "bob" or "admin").
func (e *fsEnv) device(t *testing.T, user string) *testkit.Device {
	t.Helper()
	return e.deviceWith(t, user, testkit.DeviceOptions{})
}

// deviceWith opens a new device of user with o (its token set here).
func (e *fsEnv) deviceWith(t *testing.T, user string, o testkit.DeviceOptions) *testkit.Device {
	t.Helper()
	o.Token = "token-" + user
	return testkit.NewDevice(t, e.reg, e.url, o)
}

// write applies rows as the back office (Server.Write), in one session,
// and returns its version.
func (e *fsEnv) write(t *testing.T, rows ...wire.Row) int64 {
	t.Helper()
	v, err := e.srv.Write(ctx, adminPrincipal, rows)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	return v
}

// Rows of the back office's writes.
func team(id string) wire.Row {
	return wire.Row{Table: "teams", ID: id, Values: map[string]any{"name": "team " + id}}
}

func membership(id, user, team string) wire.Row {
	return wire.Row{Table: "memberships", ID: id, Values: map[string]any{"user_id": user, "team_id": team}}
}

func project(id, team, name string) wire.Row {
	return wire.Row{Table: "projects", ID: id, Values: map[string]any{"team_id": team, "name": name}}
}

func task(id, project, title string) wire.Row {
	return wire.Row{Table: "tasks", ID: id, Values: map[string]any{"project_id": project, "title": title}}
}

func note(id, owner, title string) wire.Row {
	return wire.Row{Table: "notes", ID: id, Values: map[string]any{"owner_id": owner, "title": title}}
}

func deleted(r wire.Row) wire.Row {
	r.Deleted = true
	return r
}

// seed writes the field-service data: teams A, B, C (D with no project),
// two projects in A and B, one in C, their tasks, notes of ada and bob,
// ada in team A and bob in team B.
func (e *fsEnv) seed(t *testing.T) {
	t.Helper()
	e.write(t,
		team("A"), team("B"), team("C"), team("D"),
		membership("m-ada-A", "ada", "A"), membership("m-bob-B", "bob", "B"),
		project("pA1", "A", "A one"), project("pA2", "A", "A two"),
		project("pB1", "B", "B one"), project("pB2", "B", "B two"),
		project("pC1", "C", "C one"),
		task("tA1a", "pA1", "a"), task("tA1b", "pA1", "b"), task("tA2a", "pA2", "a"),
		task("tB1a", "pB1", "a"), task("tB1b", "pB1", "b"), task("tB2a", "pB2", "a"),
		task("tC1a", "pC1", "a"),
		note("nAda1", "ada", "ada's first"), note("nAda2", "ada", "ada's second"), note("nBob1", "bob", "bob's"),
	)
}

// serverRows returns the tenant's rows of table on the server: id to the
// value of col, live rows only.
func (e *fsEnv) serverRows(t *testing.T, table, col string) map[string]string {
	t.Helper()
	rows, err := e.db.QueryContext(ctx, fmt.Sprintf(`SELECT id, %s, _deleted FROM %s WHERE _tenant = 'acme'`, col, table))
	if err != nil {
		t.Fatalf("server rows of %s: %v", table, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, val string
		var del any
		if err := rows.Scan(&id, &val, &del); err != nil {
			t.Fatal(err)
		}
		if !truthy(del) {
			out[id] = val
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// truthy reads a _deleted column of any store.
func truthy(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case int64:
		return x != 0
	case []byte:
		return string(x) != "0" && string(x) != "" && string(x) != "false"
	case string:
		return x != "0" && x != "" && x != "false"
	}
	return v != nil
}

// visible computes, from the server's tables, the live rows user may see:
// table to sorted ids. Every row of teams; user's memberships and notes;
// the projects of the teams of user's live memberships, and their tasks.
func (e *fsEnv) visible(t *testing.T, user string) map[string][]string {
	t.Helper()
	teams := map[string]bool{}
	var mine []string
	for id, uid := range e.serverRows(t, "memberships", "user_id") {
		if uid == user {
			mine = append(mine, id)
		}
	}
	teamOf := e.serverRows(t, "memberships", "team_id")
	for _, id := range mine {
		teams[teamOf[id]] = true
	}
	out := map[string][]string{"teams": slices.Collect(maps.Keys(e.serverRows(t, "teams", "name"))), "memberships": mine}
	projects := map[string]bool{}
	for id, team := range e.serverRows(t, "projects", "team_id") {
		if teams[team] {
			projects[id] = true
			out["projects"] = append(out["projects"], id)
		}
	}
	for id, p := range e.serverRows(t, "tasks", "project_id") {
		if projects[p] {
			out["tasks"] = append(out["tasks"], id)
		}
	}
	for id, owner := range e.serverRows(t, "notes", "owner_id") {
		if owner == user {
			out["notes"] = append(out["notes"], id)
		}
	}
	for _, table := range fsTables {
		slices.Sort(out[table])
	}
	return out
}

// everyLive returns the ids of every live row of the tenant on the server.
func (e *fsEnv) everyLive(t *testing.T) map[string]bool {
	t.Helper()
	all := map[string]bool{}
	for _, table := range fsTables {
		for id := range e.serverRows(t, table, "id") {
			all[table+" "+id] = true
		}
	}
	return all
}

// deviceRows returns the rows d holds physically: table to sorted ids,
// live ones in live, tombstones in dead.
func deviceRows(t *testing.T, d *testkit.Device) (live, dead map[string][]string) {
	t.Helper()
	live, dead = map[string][]string{}, map[string][]string{}
	for _, table := range fsTables {
		rows, err := d.DB.SQL().QueryContext(ctx, fmt.Sprintf(`SELECT id, _deleted FROM %q ORDER BY id`, table))
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			var del any
			if err := rows.Scan(&id, &del); err != nil {
				t.Fatal(err)
			}
			if truthy(del) {
				dead[table] = append(dead[table], id)
			} else {
				live[table] = append(live[table], id)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return live, dead
}

// holds reports whether d holds a row (live or a tombstone) of table id.
func holds(t *testing.T, d *testkit.Device, table, id string) bool {
	t.Helper()
	var n int
	if err := d.DB.SQL().QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*) FROM %q WHERE id = ?`, table), id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// checkHolds checks that d, a device of user, holds exactly the live rows
// user may see, no row of the server's that user may not see (not even as
// a tombstone), nothing to push, and that Verify finds it equal to the
// server.
func (e *fsEnv) checkHolds(t *testing.T, d *testkit.Device, user string) {
	t.Helper()
	want := e.visible(t, user)
	live, dead := deviceRows(t, d)
	for _, table := range fsTables {
		if got := live[table]; !slices.Equal(got, want[table]) {
			t.Errorf("%s's device holds %s %v, want %v", user, table, got, want[table])
		}
	}
	serverLive := e.everyLive(t)
	for table, ids := range dead {
		for _, id := range ids {
			if serverLive[table+" "+id] && !slices.Contains(want[table], id) {
				t.Errorf("%s's device holds a tombstone of %s %s, live on the server and not %s's to see: a local delete, not an eviction", user, table, id, user)
			}
		}
	}
	if n, err := d.DB.Pending(ctx); err != nil || n != 0 {
		t.Errorf("%s's device has %d rows to push (%v), want none", user, n, err)
	}
	rep, err := d.Co.Verify(ctx)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if diff := rep.Differs(); len(diff) > 0 {
		t.Errorf("%s's device differs from the server in %v: %+v", user, diff, rep.Tables)
	}
}

// snapshotRows reads the server's snapshot for d (registered), page by
// page: table to sorted ids.
func snapshotRows(t *testing.T, d *testkit.Device) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	cursor := ""
	for range 1000 {
		page, err := d.API.Snapshot(ctx, d.DB.DeviceID(), cursor, 3)
		if err != nil {
			t.Fatalf("snapshot: %v", err)
		}
		for _, r := range page.Rows {
			if !r.Deleted && !r.Evict {
				out[r.Table] = append(out[r.Table], r.ID)
			}
		}
		cursor = page.Cursor
		if !page.More {
			for _, table := range fsTables {
				slices.Sort(out[table])
			}
			return out
		}
	}
	t.Fatal("the snapshot did not end")
	return nil
}

// evicted returns Report.Evicted (the core adds it; until then the test
// fails here rather than not compile).
func evicted(t *testing.T, rep coordinator.Report) int {
	t.Helper()
	f := reflect.ValueOf(rep).FieldByName("Evicted")
	if !f.IsValid() {
		t.Error("coordinator.Report has no Evicted")
		return -1
	}
	return int(f.Int())
}

// openConflicts returns d's open conflict log entries.
func openConflicts(t *testing.T, d *testkit.Device) []localdb.ConflictRecord {
	t.Helper()
	log, err := d.DB.Conflicts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return log
}

// forbidden returns d's open conflict log entries of strategy forbidden,
// by "table id", the latest of a row's.
func forbidden(t *testing.T, d *testkit.Device) map[string]localdb.ConflictRecord {
	t.Helper()
	out := map[string]localdb.ConflictRecord{}
	for _, c := range openConflicts(t, d) {
		key := c.Table + " " + c.RowID
		if prev, ok := out[key]; c.Strategy == wire.StrategyForbidden && (!ok || c.ID > prev.ID) {
			out[key] = c
		}
	}
	return out
}

// pulledTotal is the number of rows a sync received.
func pulledTotal(rep coordinator.Report) int {
	n := 0
	for _, v := range rep.Pulled {
		n += v
	}
	return n
}

// ids joins a table's ids for messages.
func ids(m map[string][]string, table string) string { return strings.Join(m[table], ",") }
