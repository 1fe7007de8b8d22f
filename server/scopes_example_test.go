package server_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/sqlitestore"
	"github.com/tethersync/tether/wire"
)

// Scopes of a field-service app (the README's "Who sees what"): teams of
// technicians, projects per team, tasks per project, private notes per
// user. server.New refuses scopes under which a device could hold a task
// without its project.
func ExampleOptions_scopes() {
	type Membership struct {
		entity.Meta `sync:"memberships,1"`
		ID          string `db:"id"`
		UserID      string `db:"user_id"`
		TeamID      string `db:"team_id"`
	}
	type Project struct {
		entity.Meta `sync:"projects,1"`
		ID          string `db:"id"`
		TeamID      string `db:"team_id"`
		Name        string `db:"name"`
	}
	type Task struct {
		entity.Meta `sync:"tasks,2"`
		ID          string `db:"id"`
		ProjectID   string `db:"project_id,ref=projects"`
		Title       string `db:"title"`
	}
	type Note struct {
		entity.Meta `sync:"notes,1"`
		ID          string `db:"id"`
		OwnerID     string `db:"owner_id"`
		Text        string `db:"text"`
	}
	dir, err := os.MkdirTemp("", "tether-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	reg := entity.NewRegistry()
	if err := reg.Register(Membership{}, Project{}, Task{}, Note{}); err != nil {
		log.Fatal(err)
	}
	store, err := sqlitestore.Open(filepath.Join(dir, "server.db"), reg.Schema(), sqlitestore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	auth := server.StaticTokens{"token-ada": {Tenant: "acme", User: "ada"}}

	srv, err := server.New(store, server.Options{
		Auth: auth,
		Scopes: &server.Scopes{
			// The keys each row carries. A table not listed is seen by every device of the tenant.
			Tables: map[string]server.RowKeys{
				"projects":    server.KeyColumn("team:", "team_id"), // one key: "team:" + the row's team_id
				"tasks":       server.KeyParent("project_id"),       // the keys of the project it references (a ref= column)
				"notes":       server.KeyColumn("user:", "owner_id"),
				"memberships": server.KeyColumn("user:", "user_id"),
			},
			// The keys a principal holds, read in the same transaction as the rows it pulls.
			Principal: server.PrincipalKeys(
				server.UserKey("user:"), // "user:" + Principal.User
				server.TableKeys("memberships", "user_id", "team:", "team_id"), // "team:" + team_id of each live membership row of the user
			),
		},
		// Optional, after the scope check: refuse a write with server.ErrForbidden (wrapped, with a reason).
		Authorize: func(ctx context.Context, p server.Principal, table string, old, new *wire.Row) error { return nil },
	})
	if err != nil {
		log.Fatal(err)
	}
	srv.Close()
	fmt.Println("scoped server ready")

	_, err = server.New(store, server.Options{
		Auth: auth,
		Scopes: &server.Scopes{
			Tables:    map[string]server.RowKeys{"projects": server.KeyColumn("team:", "team_id")},
			Principal: server.PrincipalKeys(server.TableKeys("memberships", "user_id", "team:", "team_id")),
		},
	})
	fmt.Println(err)
	// Output:
	// scoped server ready
	// server: scopes: tasks.project_id references projects, which is scoped, and tasks does not take its keys: a device could hold a tasks row without the projects row it references; give tasks server.KeyParent("project_id")
}
