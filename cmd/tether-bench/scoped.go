package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"

	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// The scoped scenario: a tenant of -scoped-teams teams holding
// -scoped-team-rows projects each, and one device of a member of one team
// (user "bench", in team 0). It measures the device's first sync, a no-op
// sync, and a sync after -scoped-changes changes in other teams, on the
// tenant with the scopes and on the same tenant unscoped (every
// device holds everything). A back office writes the memberships
// (Server.Write: only trusted writes may write the rows that give keys),
// and an admin device, whose token's claims hold every team's key, pushes
// the projects and makes the changes.

// Project is the scoped scenario's row: one team's, about 200 bytes like
// Item.
type Project struct {
	entity.Meta `sync:"projects,2"`
	ID          string    `db:"id"`
	TeamID      string    `db:"team_id"`
	Name        string    `db:"name"`
	Category    string    `db:"category"`
	Note        *string   `db:"note"`
	Price       float64   `db:"price"`
	Quantity    int64     `db:"quantity"`
	UpdatedAt   time.Time `db:"updated_at"`
	Tags        []string  `db:"tags,json"`
}

// Membership puts a user in a team.
type Membership struct {
	entity.Meta `sync:"memberships,1"`
	ID          string `db:"id"`
	UserID      string `db:"user_id"`
	TeamID      string `db:"team_id"`
}

// adminToken is the token of the device that loads the scoped tenant.
const adminToken = "bench-admin-token"

func scopedRegistry() *entity.Registry {
	reg := entity.NewRegistry()
	if err := reg.Register(Membership{}, Project{}); err != nil {
		panic(err)
	}
	return reg
}

func teamID(i int) string { return fmt.Sprintf("team-%03d", i) }

// memberID is the user of team i's membership; "bench" is team 0's, the
// measured device's user.
func memberID(i int) string {
	if i == 0 {
		return "bench"
	}
	return fmt.Sprintf("user-%03d", i)
}

// scopedOptions returns the options of the tenant's server: with the
// issue's scopes (projects by team, memberships by user) when scoped.
func scopedOptions(teams int, scoped bool) server.Options {
	var teamClaim []any
	for i := range teams {
		teamClaim = append(teamClaim, teamID(i))
	}
	o := server.Options{Auth: server.StaticTokens(map[string]server.Principal{
		benchToken: {Tenant: "bench", User: "bench"},
		adminToken: {Tenant: "bench", User: "admin", Claims: map[string]any{"teams": teamClaim}},
	})}
	if scoped {
		o.Scopes = &server.Scopes{
			Tables: map[string]server.RowKeys{
				"projects":    server.KeyColumn("team:", "team_id"),
				"memberships": server.KeyColumn("user:", "user_id"),
			},
			Principal: server.PrincipalKeys(
				server.UserKey("user:"),
				server.TableKeys("memberships", "user_id", "team:", "team_id"),
				server.ClaimKeys("teams", "team:"), // the admin's
			),
		}
	}
	return o
}

// scopedTemplate returns a closed device database holding the tenant's
// projects, dirty: -scoped-team-rows per team.
func (b *bench) scopedTemplate(ctx context.Context, reg *entity.Registry) (string, error) {
	if b.scopedTpl != "" {
		return b.scopedTpl, nil
	}
	p := b.path("scoped-template")
	db, err := localdb.Open(ctx, p, reg)
	if err != nil {
		return "", err
	}
	err = fillTenant(ctx, db, b.cfg.scopedTeams, b.cfg.scopedTeamRows)
	if err = errors.Join(err, db.Close()); err != nil {
		return "", fmt.Errorf("scoped tenant: %w", err)
	}
	b.scopedTpl = p
	return p, nil
}

// fillTenant saves the tenant's projects into db, in transactions of up
// to 10,000 rows.
func fillTenant(ctx context.Context, db *localdb.DB, teams, perTeam int) error {
	r := rand.New(rand.NewPCG(uint64(teams), uint64(perTeam)))
	var err error
	for n, total := 0, teams*perTeam; err == nil && n < total; {
		k := min(10_000, total-n)
		err = db.Update(ctx, func(tx *localdb.Tx) error {
			for i := n; i < n+k; i++ {
				it := newItem(r, i)
				p := Project{ID: it.ID, TeamID: teamID(i / perTeam), Name: it.Name, Category: it.Category, Note: it.Note,
					Price: it.Price, Quantity: it.Quantity, UpdatedAt: it.UpdatedAt, Tags: it.Tags}
				if err := tx.Save(ctx, &p); err != nil {
					return err
				}
			}
			return nil
		})
		n += k
	}
	return err
}

// scopedSync is one measured SyncNow of the member's device.
type scopedSync struct {
	took   time.Duration
	pulled int   // rows received
	wire   int64 // bytes read from the connection
}

// scopedResult is the scenario's three figures on one tenant: each the
// run of median time.
type scopedResult struct {
	load                     time.Duration // the admin's push of the tenant's projects
	first, noop, incremental scopedSync
}

// scopedTenant is a running server holding the tenant, and the admin
// device that loaded it.
type scopedTenant struct {
	srv   *benchServer
	admin *device
	reg   *entity.Registry
	load  time.Duration // the admin's SyncNow that pushed the projects
}

func (t *scopedTenant) Close() error { return errors.Join(t.admin.Close(), t.srv.Close()) }

// startTenant starts a server over a new store, scoped or not, and loads
// the tenant into it through the admin device.
func (b *bench) startTenant(ctx context.Context, scoped bool) (*scopedTenant, error) {
	reg := scopedRegistry()
	tpl, err := b.scopedTemplate(ctx, reg)
	if err != nil {
		return nil, err
	}
	adminPath := b.path("scoped-admin")
	if err := copyFile(adminPath, tpl); err != nil {
		return nil, err
	}
	store, err := b.openStoreOf(b.path("scoped-server"), reg.Schema())
	srv, err := startServerWith(store, err, scopedOptions(b.cfg.scopedTeams, scoped))
	if err != nil {
		return nil, err
	}
	// The projects go up as one session: its commit may take minutes
	// on a busy machine.
	admin, err := openDevice(ctx, adminPath, srv.URL, reg, deviceOptions{batch: b.cfg.batch, token: adminToken, timeout: time.Hour})
	if err != nil {
		srv.Close()
		return nil, err
	}
	t := &scopedTenant{srv: srv, admin: admin, reg: reg}
	err = writeMemberships(ctx, srv.srv, b.cfg.scopedTeams)
	if err == nil {
		start := time.Now()
		var rep coordinator.Report
		rep, err = admin.co.SyncNow(ctx)
		t.load = time.Since(start)
		want := b.cfg.scopedTeams * b.cfg.scopedTeamRows
		if err == nil && (rep.Pushed["projects"] != want || rep.Conflicts > 0) {
			err = fmt.Errorf("pushed %v with %d conflicts, want %d projects and none", rep.Pushed, rep.Conflicts, want)
		}
	}
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("load the scoped tenant: %w", err)
	}
	return t, nil
}

// writeMemberships writes a membership per team as a back office does:
// team i's member is memberID(i).
func writeMemberships(ctx context.Context, srv *server.Server, teams int) error {
	rows := make([]wire.Row, teams)
	for i := range rows {
		rows[i] = wire.Row{Table: "memberships", ID: uuid.Must(uuid.NewV7()).String(),
			Values: map[string]any{"user_id": memberID(i), "team_id": teamID(i)}}
	}
	if _, err := srv.Write(ctx, server.Principal{Tenant: "bench", User: "office"}, rows); err != nil {
		return fmt.Errorf("write the memberships: %w", err)
	}
	return nil
}

// syncMember times one SyncNow of the member's device d, and checks it
// pulled want rows.
func syncMember(ctx context.Context, d *device, want int, what string) (scopedSync, error) {
	read := d.wire.read.Load()
	start := time.Now()
	rep, err := d.co.SyncNow(ctx)
	s := scopedSync{took: time.Since(start), wire: d.wire.read.Load() - read}
	if err != nil {
		return s, fmt.Errorf("%s: %w", what, err)
	}
	for _, n := range rep.Pulled {
		s.pulled += n
	}
	if s.pulled != want {
		return s, fmt.Errorf("%s: pulled %d rows (%v), want %d", what, s.pulled, rep.Pulled, want)
	}
	return s, nil
}

// medianScoped returns the sync of median time.
func medianScoped(s []scopedSync) scopedSync {
	ds := make([]time.Duration, len(s))
	for i := range s {
		ds[i] = s[i].took
	}
	m := median(ds)
	for _, x := range s {
		if x.took == m {
			return x
		}
	}
	return s[0]
}

// measureScoped measures the member's device on the tenant, scoped or
// not: its first sync (a new device each run), a no-op sync, and a sync
// after -scoped-changes changes in other teams (made anew each run).
func (b *bench) measureScoped(ctx context.Context, scoped bool) (scopedResult, error) {
	t, err := b.startTenant(ctx, scoped)
	if err != nil {
		return scopedResult{}, err
	}
	defer t.Close()
	teams, perTeam, changes := b.cfg.scopedTeams, b.cfg.scopedTeamRows, b.cfg.scopedChanges
	wantFirst, wantChanges := perTeam+1, 0 // team 0's projects and the member's own membership
	if !scoped {
		wantFirst, wantChanges = teams*(perTeam+1), changes
	}
	res := scopedResult{load: t.load}
	var d *device
	var runs []scopedSync
	for range b.cfg.runs {
		if d != nil {
			d.Close()
		}
		if d, err = openDevice(ctx, b.path("scoped-member"), t.srv.URL, t.reg, deviceOptions{batch: b.cfg.batch}); err != nil {
			return res, err
		}
		s, err := syncMember(ctx, d, wantFirst, "first sync")
		if err != nil {
			d.Close()
			return res, err
		}
		runs = append(runs, s)
	}
	defer d.Close()
	res.first = medianScoped(runs)
	if res.noop, err = b.scopedNoop(ctx, d); err != nil {
		return res, err
	}
	runs = runs[:0]
	for round := range b.cfg.runs {
		if err := changeOtherTeams(ctx, t.admin, changes, round); err != nil {
			return res, err
		}
		s, err := syncMember(ctx, d, wantChanges, fmt.Sprintf("sync after %d changes in other teams", changes))
		if err != nil {
			return res, err
		}
		runs = append(runs, s)
	}
	res.incremental = medianScoped(runs)
	return res, nil
}

// scopedNoop times no-op syncs of d: the median of at least 20.
func (b *bench) scopedNoop(ctx context.Context, d *device) (scopedSync, error) {
	var runs []scopedSync
	for range max(b.cfg.runs, 20) {
		s, err := syncMember(ctx, d, 0, "no-op sync")
		if err != nil {
			return s, err
		}
		runs = append(runs, s)
	}
	return medianScoped(runs), nil
}

// changeOtherTeams changes n projects outside team 0 on the admin device
// (a different slice of them each round) and pushes them.
func changeOtherTeams(ctx context.Context, admin *device, n, round int) error {
	var others int
	if err := admin.db.SQL().QueryRowContext(ctx, "SELECT count(*) FROM projects WHERE team_id <> ?", teamID(0)).Scan(&others); err != nil {
		return err
	}
	offset := round * n % max(1, others-n+1)
	ps, err := localdb.Query[Project](ctx, admin.db,
		"id IN (SELECT id FROM projects WHERE team_id <> ? ORDER BY id LIMIT ? OFFSET ?)", teamID(0), n, offset)
	if err != nil {
		return err
	}
	if len(ps) != n {
		return fmt.Errorf("changes in other teams: %d projects there, want %d", len(ps), n)
	}
	err = admin.db.Update(ctx, func(tx *localdb.Tx) error {
		for i := range ps {
			ps[i].Quantity++
			if err := tx.Save(ctx, &ps[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	rep, err := admin.co.SyncNow(ctx)
	if err == nil && rep.Pushed["projects"] != n {
		err = fmt.Errorf("pushed %v, want %d projects", rep.Pushed, n)
	}
	if err != nil {
		return fmt.Errorf("changes in other teams: %w", err)
	}
	return nil
}
