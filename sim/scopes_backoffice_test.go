package sim

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// backOffice grants and revokes memberships, moves projects between teams
// and creates them, as an app's back office does: through Server.Write
// (devices may not write the rows that give scope keys).
type backOffice struct {
	w   *scWorld
	rng *rand.Rand
	p   server.Principal
	mu  sync.Mutex
	seq int
}

func newBackOffice(w *scWorld, rng *rand.Rand) *backOffice {
	return &backOffice{w: w, rng: rng, p: server.Principal{Tenant: "sim", User: adminUser}}
}

// write applies rows through Server.Write, as one session.
func (b *backOffice) write(ctx context.Context, rows ...wire.Row) error {
	b.w.mu.Lock()
	defer b.w.mu.Unlock()
	if _, err := b.w.up.srv.Write(ctx, b.p, rows); err != nil {
		return fmt.Errorf("write %s %s: %w", rows[0].Table, rows[0].ID, err)
	}
	return nil
}

func (b *backOffice) id(kind string) string {
	b.seq++
	return fmt.Sprintf("bo-%s-%d", kind, b.seq)
}

// setUp writes the teams, the vault's projects, two projects per other
// team and each person's first memberships.
func (b *backOffice) setUp(ctx context.Context) error {
	var rows []wire.Row
	for _, t := range scTeams {
		rows = append(rows, wire.Row{Table: "teams", ID: t, Values: map[string]any{"name": "team " + t}})
	}
	for range 4 {
		id := b.id("vault")
		b.w.vault = append(b.w.vault, id)
		rows = append(rows, wire.Row{Table: "projects", ID: id, Values: map[string]any{"team_id": vaultTeam, "name": id}})
	}
	for _, t := range scTeams[1:] {
		for range 2 {
			id := b.id("project")
			rows = append(rows, wire.Row{Table: "projects", ID: id, Values: map[string]any{"team_id": t, "name": id}})
		}
	}
	for _, u := range scUsers {
		for _, t := range b.openTeams(1 + b.rng.IntN(2)) {
			rows = append(rows, b.membership(u, t))
		}
	}
	return b.write(ctx, rows...)
}

// openTeams returns n distinct teams but the vault.
func (b *backOffice) openTeams(n int) []string {
	perm := b.rng.Perm(len(scTeams) - 1)
	var out []string
	for _, i := range perm[:n] {
		out = append(out, scTeams[1+i])
	}
	return out
}

func (b *backOffice) membership(user, team string) wire.Row {
	return wire.Row{Table: "memberships", ID: b.id("m-" + user + "-" + team),
		Values: map[string]any{"user_id": user, "team_id": team, "role": "member"}}
}

// op performs one random back-office operation, chosen from the server's
// rows.
func (b *backOffice) op(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	db := func(q string, args ...any) ([][]string, error) { return b.query(ctx, q+" ORDER BY id", args...) }
	one := func(rows [][]string) []string { return rows[b.rng.IntN(len(rows))] }
	switch x := b.rng.IntN(100); {
	case x < 35: // grant a team to someone not in it
		u := scUsers[b.rng.IntN(len(scUsers))]
		t := b.openTeams(1)[0]
		in, err := db(`SELECT id FROM memberships WHERE _tenant = 'sim' AND _deleted = 0 AND user_id = ? AND team_id = ?`, u, t)
		if err != nil || len(in) > 0 {
			return err
		}
		b.w.stats.grants.Add(1)
		return b.write(ctx, b.membership(u, t))
	case x < 65: // revoke one
		rows, err := db(`SELECT id, user_id, team_id, role FROM memberships WHERE _tenant = 'sim' AND _deleted = 0`)
		if err != nil || len(rows) == 0 {
			return err
		}
		m := one(rows)
		b.w.stats.revokes.Add(1)
		return b.write(ctx, wire.Row{Table: "memberships", ID: m[0], Deleted: true, Values: map[string]any{"user_id": m[1], "team_id": m[2], "role": m[3]}})
	case x < 90: // move a project to another team
		rows, err := db(`SELECT id, team_id, name FROM projects WHERE _tenant = 'sim' AND _deleted = 0 AND team_id != ?`, vaultTeam)
		if err != nil || len(rows) == 0 {
			return err
		}
		p := one(rows)
		to := b.openTeams(1)[0]
		if to == p[1] {
			return nil
		}
		b.w.stats.moves.Add(1)
		return b.write(ctx, wire.Row{Table: "projects", ID: p[0], Values: map[string]any{"team_id": to, "name": p[2]}})
	default:
		id := b.id("project")
		b.w.stats.created.Add(1)
		return b.write(ctx, wire.Row{Table: "projects", ID: id, Values: map[string]any{"team_id": b.openTeams(1)[0], "name": id}})
	}
}

// tuples returns the rows of a query whose columns are all text.
func tuples(ctx context.Context, db *sql.DB, q string, args ...any) ([][]string, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out [][]string
	for rows.Next() {
		vals := make([]string, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		out = append(out, vals)
	}
	return out, rows.Err()
}

// revokeOne deletes one of user's memberships, if it has any.
func (b *backOffice) revokeOne(ctx context.Context, user string) error {
	rows, err := b.query(ctx, `SELECT id, user_id, team_id, role FROM memberships WHERE _tenant = 'sim' AND _deleted = 0 AND user_id = ? ORDER BY id`, user)
	if err != nil || len(rows) == 0 {
		return err
	}
	m := rows[b.rng.IntN(len(rows))]
	b.w.stats.revokes.Add(1)
	return b.write(ctx, wire.Row{Table: "memberships", ID: m[0], Deleted: true, Values: map[string]any{"user_id": m[1], "team_id": m[2], "role": m[3]}})
}

// grantOne makes user a member of a team it is not in, if there is one.
func (b *backOffice) grantOne(ctx context.Context, user string) error {
	in, err := b.query(ctx, `SELECT DISTINCT team_id FROM memberships WHERE _tenant = 'sim' AND _deleted = 0 AND user_id = ? ORDER BY team_id`, user)
	if err != nil {
		return err
	}
	held := map[string]bool{}
	for _, r := range in {
		held[r[0]] = true
	}
	for _, t := range b.openTeams(len(scTeams) - 1) {
		if !held[t] {
			b.w.stats.grants.Add(1)
			return b.write(ctx, b.membership(user, t))
		}
	}
	return nil
}

// moveAway moves a project of one of user's teams to a team user is not
// in, if there is one.
func (b *backOffice) moveAway(ctx context.Context, user string) error {
	rows, err := b.query(ctx, `SELECT p.id, p.name FROM projects AS p WHERE p._tenant = 'sim' AND p._deleted = 0 AND p.team_id IN
		(SELECT m.team_id FROM memberships AS m WHERE m._tenant = 'sim' AND m._deleted = 0 AND m.user_id = ?) ORDER BY p.id`, user)
	if err != nil || len(rows) == 0 {
		return err
	}
	p := rows[b.rng.IntN(len(rows))]
	out, err := b.query(ctx, `SELECT t.id FROM teams AS t WHERE t._tenant = 'sim' AND t.id != ? AND t.id NOT IN
		(SELECT m.team_id FROM memberships AS m WHERE m._tenant = 'sim' AND m._deleted = 0 AND m.user_id = ?) ORDER BY t.id`, vaultTeam, user)
	if err != nil || len(out) == 0 {
		return err
	}
	b.w.stats.moves.Add(1)
	return b.write(ctx, wire.Row{Table: "projects", ID: p[0], Values: map[string]any{"team_id": out[b.rng.IntN(len(out))][0], "name": p[1]}})
}

// query runs q over the server's database.
func (b *backOffice) query(ctx context.Context, q string, args ...any) ([][]string, error) {
	b.w.mu.Lock()
	defer b.w.mu.Unlock()
	return tuples(ctx, b.w.up.store.DB(), q, args...)
}

// grantTeam makes user a member of team.
func (b *backOffice) grantTeam(ctx context.Context, user, team string) error {
	return b.write(ctx, b.membership(user, team))
}

// revokeTeam deletes user's memberships of team.
func (b *backOffice) revokeTeam(ctx context.Context, user, team string) error {
	rows, err := b.query(ctx, `SELECT id, role FROM memberships WHERE _tenant = 'sim' AND _deleted = 0 AND user_id = ? AND team_id = ? ORDER BY id`, user, team)
	if err != nil {
		return err
	}
	var del []wire.Row
	for _, m := range rows {
		del = append(del, wire.Row{Table: "memberships", ID: m[0], Deleted: true, Values: map[string]any{"user_id": user, "team_id": team, "role": m[1]}})
	}
	if len(del) == 0 {
		return fmt.Errorf("revoke %s from %s: not a member", user, team)
	}
	return b.write(ctx, del...)
}
