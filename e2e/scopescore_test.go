package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

type scTeam struct {
	entity.Meta `sync:"teams,1"`
	ID          string `db:"id"`
	Name        string `db:"name"`
}

type scProject struct {
	entity.Meta `sync:"projects,2"`
	ID          string `db:"id"`
	TeamID      string `db:"team_id"`
	Name        string `db:"name"`
}

type scTask struct {
	entity.Meta `sync:"tasks,3"`
	ID          string `db:"id"`
	ProjectID   string `db:"project_id,ref=projects"`
	Title       string `db:"title"`
}

type scMembership struct {
	entity.Meta `sync:"memberships,2"`
	ID          string `db:"id"`
	UserID      string `db:"user_id"`
	TeamID      string `db:"team_id"`
}

func scRegistry(t testing.TB) *entity.Registry {
	reg := entity.NewRegistry()
	if err := reg.Register(scTeam{}, scProject{}, scTask{}, scMembership{}); err != nil {
		t.Fatal(err)
	}
	return reg
}

func scOptions() server.Options {
	return server.Options{
		Auth: server.StaticTokens{
			"token-ada":   {Tenant: "acme", User: "ada"},
			"token-bob":   {Tenant: "acme", User: "bob"},
			"token-admin": {Tenant: "acme", User: "admin", Claims: map[string]any{"teams": []any{"A", "B"}, "users": []any{"ada", "bob"}}},
		},
		Scopes: &server.Scopes{
			Tables: map[string]server.RowKeys{
				"projects":    server.KeyColumn("team:", "team_id"),
				"tasks":       server.KeyParent("project_id"),
				"memberships": server.KeyColumn("user:", "user_id"),
			},
			Principal: server.PrincipalKeys(
				server.UserKey("user:"),
				server.TableKeys("memberships", "user_id", "team:", "team_id"),
				server.ClaimKeys("teams", "team:"),
				server.ClaimKeys("users", "user:"),
			),
		},
	}
}

// ids returns the live ids of table on a device, sorted and joined.
func scIDs(t *testing.T, db *localdb.DB, table string) string {
	t.Helper()
	rows, err := db.SQL().Query(`SELECT id FROM "` + table + `" WHERE NOT _deleted ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		rows.Scan(&id)
		out = append(out, id)
	}
	return strings.Join(out, ",")
}

func TestScopesCore(t *testing.T) {
	reg := scRegistry(t)
	stores.Each(t, stores.All, func(t *testing.T, sdb stores.Database) {
		_, srv, url := scStart(t, sdb, reg.Schema())
		ctx := context.Background()
		admin := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-admin"})
		ada := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-ada"})
		bob := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-bob"})
		for _, v := range []any{
			&scTeam{ID: "A", Name: "a"}, &scTeam{ID: "B", Name: "b"},
			&scProject{ID: "pa", TeamID: "A", Name: "pa"}, &scProject{ID: "pb", TeamID: "B", Name: "pb"},
			&scTask{ID: "ta", ProjectID: "pa", Title: "ta"}, &scTask{ID: "tb", ProjectID: "pb", Title: "tb"},
		} {
			if err := admin.DB.Save(ctx, v); err != nil {
				t.Fatal(err)
			}
		}
		if rep := admin.Sync(t); rep.Conflicts != 0 {
			t.Fatalf("admin conflicts: %+v", rep)
		}
		scMember(t, srv, "m1", "ada", "A", false)
		scMember(t, srv, "m2", "bob", "B", false)
		ada.Sync(t)
		bob.Sync(t)
		if got := scIDs(t, ada.DB, "projects") + "|" + scIDs(t, ada.DB, "tasks") + "|" + scIDs(t, ada.DB, "teams") + "|" + scIDs(t, ada.DB, "memberships"); got != "pa|ta|A,B|m1" {
			t.Fatalf("ada holds %s", got)
		}
		if got := scIDs(t, bob.DB, "projects") + "|" + scIDs(t, bob.DB, "tasks"); got != "pb|tb" {
			t.Fatalf("bob holds %s", got)
		}
		// Grant: ada joins B.
		scMember(t, srv, "m3", "ada", "B", false)
		ada.Sync(t)
		if got := scIDs(t, ada.DB, "projects") + "|" + scIDs(t, ada.DB, "tasks"); got != "pa,pb|ta,tb" {
			t.Fatalf("after the grant ada holds %s", got)
		}
		// Revocation: ada leaves A.
		scMember(t, srv, "m1", "ada", "A", true)
		rep := ada.Sync(t)
		if got := scIDs(t, ada.DB, "projects") + "|" + scIDs(t, ada.DB, "tasks"); got != "pb|tb" || rep.Evicted != 2 {
			t.Fatalf("after the revocation ada holds %s, evicted %d", got, rep.Evicted)
		}
		// Move: pb to A: ada loses it, with its task.
		if err := admin.DB.Save(ctx, &scProject{ID: "pb", TeamID: "A", Name: "pb"}); err != nil {
			t.Fatal(err)
		}
		admin.Sync(t)
		rep = ada.Sync(t)
		if got := scIDs(t, ada.DB, "projects") + "|" + scIDs(t, ada.DB, "tasks"); got != "|" || rep.Evicted != 2 {
			t.Fatalf("after the move ada holds %s, evicted %d", got, rep.Evicted)
		}
		// A member may not give itself keys.
		if err := ada.DB.Save(ctx, &scMembership{ID: "m9", UserID: "ada", TeamID: "A"}); err != nil {
			t.Fatal(err)
		}
		if rep := ada.Sync(t); rep.Conflicts != 1 || scIDs(t, ada.DB, "memberships") != "m3" {
			t.Fatalf("ada's own membership: %+v, memberships %q", rep, scIDs(t, ada.DB, "memberships"))
		}
		// Writes: bob may not create a project in A.
		if err := bob.DB.Save(ctx, &scProject{ID: "px", TeamID: "A", Name: "x"}); err != nil {
			t.Fatal(err)
		}
		rep = bob.Sync(t)
		cs, err := bob.DB.Conflicts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) != 1 || cs[0].Strategy != "forbidden" || scIDs(t, bob.DB, "projects") != "" {
			t.Fatalf("bob's refused insert: conflicts %+v, projects %q", cs, scIDs(t, bob.DB, "projects"))
		}
		if err := bob.DB.Save(ctx, &scTeam{ID: "C", Name: "c"}); err != nil {
			t.Fatal(err)
		}
		if rep := bob.Sync(t); rep.Pushed["teams"] != 1 {
			t.Fatalf("bob's next push: %+v", rep)
		}
	})
}

// A lost answer at the end of the phases that bring a device a new key
// (the request that tells the server the device stored them) costs the
// device a retry, not a rebuild: the server recorded the new keys, and
// the device's re-sent cursor names them.
func TestScopesLostAnswerAfterPhases(t *testing.T) {
	reg := scRegistry(t)
	stores.Each(t, stores.All, func(t *testing.T, sdb stores.Database) {
		_, srv, url := scStart(t, sdb, reg.Schema())
		ctx := context.Background()
		write := func(rows ...wire.Row) {
			t.Helper()
			if _, err := srv.Write(ctx, scOffice, rows); err != nil {
				t.Fatal(err)
			}
		}
		write(wire.Row{Table: "projects", ID: "pa", Values: map[string]any{"team_id": "A", "name": "a"}},
			wire.Row{Table: "projects", ID: "pb", Values: map[string]any{"team_id": "B", "name": "b"}},
			wire.Row{Table: "memberships", ID: "m1", Values: map[string]any{"user_id": "ada", "team_id": "A"}})
		var dropped atomic.Int32
		faults := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
			c, err := server.ParseCursor(r.URL.Query().Get("cursor"))
			if kind == "changes" && err == nil && c.Phase == server.PhaseDone && dropped.Add(1) == 1 {
				return testkit.DropResponse
			}
			return testkit.Pass
		}}
		ada := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-ada", Transport: faults})
		ada.Sync(t)
		write(wire.Row{Table: "memberships", ID: "m2", Values: map[string]any{"user_id": "ada", "team_id": "B"}})
		rep := ada.Sync(t)
		if dropped.Load() == 0 {
			t.Fatal("no answer to a cursor at the end of the phases was lost: the test tests nothing")
		}
		if rep.Rebuilt {
			t.Error("a lost answer at the end of the phases made the device rebuild")
		}
		if got := scIDs(t, ada.DB, "projects"); got != "pa,pb" {
			t.Errorf("ada holds projects %q, want pa,pb", got)
		}
	})
}

// scOffice is the back office of the scopes tests: it writes through
// Server.Write, trusted.
var scOffice = server.Principal{Tenant: "acme", User: "office"}

// scStart serves schema with scOptions over a new store of sdb, on
// loopback, and returns the store, the server and its URL.
func scStart(t *testing.T, sdb stores.Database, schema entity.Schema) (server.Store, *server.Server, string) {
	t.Helper()
	store := sdb.Open(t, schema, stores.Options{})
	srv, err := server.New(store, scOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return store, srv, hs.URL
}

// scMember writes (or, deleted, deletes) membership id of user in team
// as the back office.
func scMember(t *testing.T, srv *server.Server, id, user, team string, deleted bool) {
	t.Helper()
	if _, err := srv.Write(context.Background(), scOffice, []wire.Row{{Table: "memberships", ID: id, Deleted: deleted,
		Values: map[string]any{"user_id": user, "team_id": team}}}); err != nil {
		t.Fatal(err)
	}
}
