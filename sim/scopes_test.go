package sim

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/sqlitestore"
	"github.com/tethersync/tether/wire"
)

// The simulation with scopes (issue 20): people of a field-service app
// sync their devices through the fault-injecting proxy. Each row of a
// scoped table carries keys, each person holds keys, and a device holds
// exactly the rows that share a key with its person. A back office grants
// and revokes team memberships and moves projects between teams while the
// devices write, some of them rows they may not write. Devices go away
// for longer than the purge horizon and come back. Once the faults stop
// and every device has synced twice, the oracle (scopes_oracle_test.go)
// checks each device against what the server's tables say its person may
// see, and that every refused write was refused, and logged.
//
//	go test ./sim -run 'TestScopes$' -v                                       # the default run, a few seconds
//	go test ./sim -run 'TestScopes$' -sim.seed=42 -v                          # replay a seed
//	go test ./sim -run 'TestScopes$' -sim.scopes-ops=20000 -sim.scopes-activity=2s -timeout 60m -v  # a soak, about 5 minutes

var (
	scopesOps      = flag.Int("sim.scopes-ops", 400, "operations of TestScopes across its devices (the back office's are a fifteenth more)")
	scopesActivity = flag.Duration("sim.scopes-activity", 400*time.Millisecond, "Limits.DeviceActivity of TestScopes: how long the server counts a device active, and the scale of its absences (a soak wants 2s: with more rows, syncs take longer than 400ms, devices that sync all along count as inactive and are rebuilt over and over)")
)

// The scoped schema:
//
//	teams        unscoped: every device holds them; only the back office writes them
//	projects     team:<team_id>       <- tasks.project_id (KeyParent: a task is seen with its project)
//	tasks        the keys of its project
//	notes        user:<owner_id>      private notes
//	memberships  user:<user_id>       a person's teams: each live row gives its user team:<team_id>
//	board        unscoped: every device reads and writes it
//
// Team t0 is the vault: no person of the devices is ever a member, and
// the back office never moves a project into or out of it.

// ScTeam is a team.
type ScTeam struct {
	entity.Meta `sync:"teams,1"`
	ID          string `db:"id"`
	Name        string `db:"name"`
}

// ScProject is a project of a team, seen by the team's members.
type ScProject struct {
	entity.Meta `sync:"projects,2"`
	ID          string `db:"id"`
	TeamID      string `db:"team_id,ref=teams"`
	Name        string `db:"name"`
}

// ScTask is a task of a project, seen with it.
type ScTask struct {
	entity.Meta `sync:"tasks,3"`
	ID          string `db:"id"`
	ProjectID   string `db:"project_id,ref=projects"`
	Title       string `db:"title"`
	Done        int64  `db:"done"`
}

// ScMembership makes its user a member of its team.
type ScMembership struct {
	entity.Meta `sync:"memberships,4"`
	ID          string `db:"id"`
	UserID      string `db:"user_id"`
	TeamID      string `db:"team_id,ref=teams"`
	Role        string `db:"role"`
}

// ScNote is a private note, seen by its owner only.
type ScNote struct {
	entity.Meta `sync:"notes,5"`
	ID          string `db:"id"`
	OwnerID     string `db:"owner_id"`
	Text        string `db:"text"`
}

// ScPost is a message on the board, which every device sees and writes.
type ScPost struct {
	entity.Meta `sync:"board,6"`
	ID          string `db:"id"`
	Author      string `db:"author"`
	Text        string `db:"text"`
}

func scopesRegistry() *entity.Registry {
	reg := entity.NewRegistry()
	if err := reg.Register(ScTeam{}, ScProject{}, ScTask{}, ScMembership{}, ScNote{}, ScPost{}); err != nil {
		panic(err)
	}
	return reg
}

// scCols are the columns of each table, but id, that the oracle compares.
var scCols = map[string][]string{
	"teams":       {"name"},
	"projects":    {"team_id", "name"},
	"tasks":       {"project_id", "title", "done"},
	"memberships": {"user_id", "team_id", "role"},
	"notes":       {"owner_id", "text"},
	"board":       {"author", "text"},
}

// scTables are the tables in priority order.
var scTables = []string{"teams", "projects", "tasks", "memberships", "notes", "board"}

const (
	adminUser = "admin"
	vaultTeam = "t0"
	// forbiddenMark starts every value a device writes into a row it may
	// not write: no server row may ever carry one.
	forbiddenMark = "forbidden-"
)

var (
	scUsers = []string{"alice", "bob", "carol"}
	scTeams = []string{"t0", "t1", "t2", "t3", "t4"}
)

// scTokens are the bearer tokens, one per person. carol's token carries
// a claim that gives her the key of team t3 whatever her memberships
// (ClaimKeys).
func scTokens() server.StaticTokens {
	toks := server.StaticTokens{}
	for _, u := range scUsers {
		toks["tok-"+u] = server.Principal{Tenant: "sim", User: u, Claims: map[string]any{"teams": claimTeams[u]}}
	}
	return toks
}

// claimTeams are the teams each person's token claims.
var claimTeams = map[string][]any{"carol": {"t3"}}

// scopesOptions are the server's options: the scopes above, memberships
// written only by the back office (Authorize), and no sweep (the schedule
// sweeps).
func scopesOptions(lim server.Limits) server.Options {
	return server.Options{
		Auth: scTokens(), Logger: quiet, Limits: lim, SweepInterval: -1,
		Scopes: &server.Scopes{
			Tables: map[string]server.RowKeys{
				"projects":    server.KeyColumn("team:", "team_id"),
				"tasks":       server.KeyParent("project_id"),
				"notes":       server.KeyColumn("user:", "owner_id"),
				"memberships": server.KeyColumn("user:", "user_id"),
			},
			Principal: server.PrincipalKeys(
				server.UserKey("user:"),
				server.TableKeys("memberships", "user_id", "team:", "team_id"),
				server.ClaimKeys("teams", "team:"),
			),
		},
		Authorize: func(_ context.Context, p server.Principal, table string, _, _ *wire.Row) error {
			if table == "memberships" && p.User != adminUser {
				return fmt.Errorf("memberships are the back office's to write: %w", server.ErrForbidden)
			}
			return nil
		},
		Trusted: func(p server.Principal) bool { return p.User == adminUser },
	}
}

// scServer is the server behind the proxy, restarted once on its file.
type scServer struct {
	path  string
	store *sqlitestore.Store
	srv   *server.Server
	hs    *httptest.Server
}

func startScServer(t *testing.T, path string, lim server.Limits) *scServer {
	t.Helper()
	store, err := sqlitestore.Open(path, scopesRegistry().Schema(), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(store, scopesOptions(lim))
	if err != nil {
		store.Close()
		t.Fatal(err)
	}
	if err := recordHistory(context.Background(), store.DB()); err != nil {
		t.Fatal(err)
	}
	return &scServer{path: path, store: store, srv: srv, hs: httptest.NewServer(srv)}
}

func (s *scServer) close() {
	s.hs.CloseClientConnections()
	s.hs.Close()
	s.srv.Close()
	s.store.Close()
}

// scWorld is what the schedule shares.
type scWorld struct {
	mu  sync.Mutex // guards up (restarted)
	up  *scServer
	lim server.Limits
	// gate orders sweeps with the returns of devices: a device coming
	// back reads its cursor and the horizon under it.
	gate sync.RWMutex
	// notes holds the ids of the notes each person's devices created: the
	// targets of the other persons' forbidden writes.
	notesMu sync.Mutex
	notes   map[string][]string
	// vault holds the projects of the vault team.
	vault []string
	stats scStats
}

// scStats counts what the run exercised.
type scStats struct {
	grants, revokes, moves, created     atomic.Int64
	sweeps, purges, purged              atomic.Int64
	long, short, pastHorizon, rebuilds  atomic.Int64
	attempts, honest, syncs, failedSync atomic.Int64
	evicted, forbidden, fkOps           atomic.Int64
	staleTombs                          atomic.Int64
}

func (w *scWorld) db() *scServer {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.up
}

func (w *scWorld) addNote(user, id string) {
	w.notesMu.Lock()
	defer w.notesMu.Unlock()
	w.notes[user] = append(w.notes[user], id)
}

// noteOf returns a note id of user, or "".
func (w *scWorld) noteOf(user string, r *rand.Rand) string {
	w.notesMu.Lock()
	defer w.notesMu.Unlock()
	ids := w.notes[user]
	if len(ids) == 0 {
		return ""
	}
	return ids[r.IntN(len(ids))]
}

func TestScopes(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	ops := *scopesOps
	replay := fmt.Sprintf("go test ./sim -run 'TestScopes$' -sim.seed=%d -sim.scopes-ops=%d -sim.scopes-activity=%s -v", seed, ops, *scopesActivity)
	t.Logf("seed %d: replay with %s", seed, replay)
	defer func() {
		if t.Failed() {
			t.Logf("FAILED with seed %d: replay with %s", seed, replay)
		}
	}()
	start := time.Now()
	ctx := context.Background()
	dir := t.TempDir()
	lim := server.Limits{DeviceActivity: *scopesActivity}
	w := &scWorld{up: startScServer(t, filepath.Join(dir, "server.db"), lim), lim: lim, notes: map[string][]string{}}
	defer func() { w.db().close() }()
	proxy := testkit.NewProxy(w.up.hs.URL, seed)
	defer proxy.Close()
	for f, rate := range map[testkit.Fault]float64{
		testkit.DropRequest: 0.03, testkit.DropResponse: 0.03, testkit.Duplicate: 0.03,
		testkit.Delay: 0.03, testkit.Status500: 0.02, testkit.Status503: 0.02,
		testkit.Status429: 0.002, testkit.Reset: 0.02, testkit.Truncate: 0.02,
	} {
		proxy.SetRate(f, rate)
	}
	rng := rand.New(rand.NewPCG(seed, 20))
	bo := newBackOffice(w, rng)
	if err := bo.setUp(ctx); err != nil {
		t.Fatal(err)
	}

	// Two devices for alice and bob, one for carol.
	var devs []*scDevice
	for i, name := range []string{"alice-1", "alice-2", "bob-1", "bob-2", "carol-1"} {
		user := name[:len(name)-2]
		d, err := openScDevice(name, user, filepath.Join(dir, name+".db"), proxy.URL(), seed+uint64(i), w, 23)
		if err != nil {
			t.Fatal(err)
		}
		defer d.close()
		devs = append(devs, d)
	}
	for _, d := range devs { // everyone starts from the back office's rows
		if _, err := d.sync(ctx); err != nil {
			t.Fatalf("first sync of %s: %v", d.name, err)
		}
	}
	proxy.Enable(true)

	// alice-1 and carol-1 sync all along; the others go away, for longer
	// than the server counts them active and for less.
	steady := func(i int) bool { return i == 0 || i == len(devs)-1 }
	var done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(devs)+3)
	perDevice := max(ops/len(devs), 1)
	stopSweeps, sweeperDone := make(chan struct{}), make(chan struct{})
	var stopOnce sync.Once
	go func() {
		defer close(sweeperDone)
		if err := w.sweepLoop(ctx, stopSweeps); err != nil {
			errs <- err
		}
	}()
	for i, d := range devs {
		var events map[int]event
		if !steady(i) {
			events = plan(seed, i, perDevice, *scopesActivity)
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer stopOnce.Do(func() { close(stopSweeps) })
			for k := 0; k < perDevice; k++ {
				var err error
				switch e := events[k]; e.kind {
				case evLong, evShort:
					e.ops = min(e.ops, perDevice-k)
					var did int
					did, err = d.absent(ctx, e, &done)
					k += did
				}
				if err == nil {
					err = d.op(ctx)
				}
				if err != nil && isFK(err) {
					// A pull between two pages holds a child whose
					// parent it has not received yet, or removed
					// already: a local write to that child fails.
					if w.stats.fkOps.Add(1) <= 3 {
						what, task := d.orphans(ctx)
						t.Logf("%s op %d refused by a foreign key while a pull is under way: %v; %s", d.name, k, err, what)
						if task != "" {
							explain(t, ctx, w.db().store.DB(), d, nil, "tasks", task)
						}
					}
					err = nil
				}
				if err != nil {
					errs <- fmt.Errorf("%s op %d: %w", d.name, k, err)
					return
				}
				done.Add(1)
				if d.rng.IntN(8) == 0 {
					d.syncTolerant(ctx)
				}
			}
		}()
		go func() { // a second caller of SyncNow (coalesced)
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed+uint64(i), 99))
			for range perDevice / 10 {
				d.syncTolerant(ctx)
				time.Sleep(time.Duration(r.IntN(5)) * time.Millisecond)
			}
		}()
	}
	// The back office works all along: one operation every fifteen of the
	// devices'.
	wg.Add(1)
	go func() {
		defer wg.Done()
		n := max(ops/15, 8)
		deadline := time.Now().Add(30 * time.Minute)
		for k := range n {
			for done.Load() < int64((k+1)*ops/(n+1)) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if err := bo.op(ctx); err != nil {
				errs <- fmt.Errorf("back office op %d: %w", k, err)
				return
			}
		}
	}()
	// Progress, in long runs.
	progress, stopProgress, progressDone := time.NewTicker(time.Minute), make(chan struct{}), make(chan struct{})
	defer func() { close(stopProgress); <-progressDone; progress.Stop() }()
	go func() {
		defer close(progressDone)
		for {
			select {
			case <-stopProgress:
				return
			case <-progress.C:
				t.Logf("%s: %d operations done", time.Since(start).Round(time.Second), done.Load())
			}
		}
	}()
	// The server restarts on its file halfway through.
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		deadline := time.Now().Add(30 * time.Minute)
		for done.Load() < int64(ops/2) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.up.close()
		w.up = startScServer(t, w.up.path, lim)
		proxy.SetUpstream(w.up.hs.URL)
	}()
	wg.Wait()
	<-restarted
	<-sweeperDone
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	proxy.Enable(false)
	epilogue(t, ctx, w, bo, devs)

	// Quiescence: every device syncs twice, in turn, with no fault.
	all := devs
	for round := range 2 {
		for _, d := range all {
			if _, err := d.sync(ctx); err != nil {
				t.Fatalf("final sync %d of %s: %v", round, d.name, err)
			}
		}
	}
	checkScopes(t, ctx, w, all)

	counts := proxy.Counts()
	var faults int64
	for _, c := range counts {
		faults += c
	}
	s := &w.stats
	t.Logf("ops %d by %d devices: %d honest, %d forbidden attempts; back office: %d grants, %d revokes, %d moves, %d projects created; faults %d; syncs %d (%d failed under faults); rows evicted %d; local writes refused by a foreign key during a pull %d; tombstones kept of rows deleted then created again out of sight %d; forbidden entries in the conflict logs %d; server restarted once; %s",
		done.Load(), len(devs), s.honest.Load(), s.attempts.Load(), s.grants.Load(), s.revokes.Load(), s.moves.Load(), s.created.Load(),
		faults, s.syncs.Load(), s.failedSync.Load(), s.evicted.Load(), s.fkOps.Load(), s.staleTombs.Load(), s.forbidden.Load(), time.Since(start).Round(time.Millisecond))
	t.Logf("device activity %s: absences %d long + %d short, returns past the purge horizon %d, rebuilds %d; sweeps %d, purges %d, tombstones purged %d",
		*scopesActivity, s.long.Load(), s.short.Load(), s.pastHorizon.Load(), s.rebuilds.Load(), s.sweeps.Load(), s.purges.Load(), s.purged.Load())
}

// sweepLoop sweeps every tenth of DeviceActivity until stop is closed.
func (w *scWorld) sweepLoop(ctx context.Context, stop <-chan struct{}) error {
	tick := time.NewTicker(w.lim.DeviceActivity / 10)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
		if err := w.sweepOnce(ctx); err != nil {
			return err
		}
	}
}

// sweepOnce runs one sweep, and returns the purge horizon after it.
func (w *scWorld) sweepOnce(ctx context.Context) error {
	w.gate.Lock()
	defer w.gate.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.up.store.Sweep(ctx, w.lim, sweepMax)
	if err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	w.stats.sweeps.Add(1)
	if n > 0 {
		w.stats.purges.Add(1)
		w.stats.purged.Add(int64(n))
	}
	return nil
}

// epilogue plays, with no fault, what the random schedule may miss:
// alice-2 and bob-2 go away; the back office revokes a team of alice's
// and of bob's, grants each a new one and moves a project out of reach
// of each, while the others (and the away devices, offline) write;
// alice-2 comes back before any sweep; bob-2 stays away until the purge
// horizon has passed its cursor, and must be rebuilt when it comes back.
func epilogue(t *testing.T, ctx context.Context, w *scWorld, bo *backOffice, devs []*scDevice) {
	t.Helper()
	byName := map[string]*scDevice{}
	for _, d := range devs {
		byName[d.name] = d
	}
	brief, long := byName["alice-2"], byName["bob-2"]
	others := []*scDevice{byName["alice-1"], byName["bob-1"], byName["carol-1"]}
	for _, d := range devs {
		if _, err := d.sync(ctx); err != nil {
			t.Fatalf("epilogue: sync of %s: %v", d.name, err)
		}
	}
	brief.syncMu.Lock()
	long.syncMu.Lock()
	cur, err := long.db.Syncer().Cursor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	left, err := server.ParseCursor(cur)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob"} {
		for _, f := range []func(context.Context, string) error{bo.revokeOne, bo.grantOne, bo.moveAway} {
			if err := f(ctx, u); err != nil {
				t.Fatalf("epilogue: back office: %v", err)
			}
		}
	}
	work := func(ds ...*scDevice) {
		for _, d := range ds {
			for range 3 {
				if err := d.op(ctx); err != nil {
					t.Fatalf("epilogue: %s: %v", d.name, err)
				}
			}
		}
	}
	work(brief, long)
	for _, d := range others {
		work(d)
		if _, err := d.sync(ctx); err != nil {
			t.Fatalf("epilogue: sync of %s: %v", d.name, err)
		}
	}
	brief.syncMu.Unlock()
	rep, err := brief.sync(ctx)
	if err != nil {
		t.Fatalf("epilogue: %s back: %v", brief.name, err)
	}
	t.Logf("epilogue: %s came back after the back office's changes, before any sweep (rebuilt %v)", brief.name, rep.Rebuilt)
	// The others write (deletes too) and sync, and the schedule sweeps,
	// until the horizon passes long's cursor: at least DeviceActivity
	// after long last pulled.
	passed := false
	for range 400 {
		work(append(others, brief)...)
		for _, d := range append(others, brief) {
			d.syncTolerant(ctx)
		}
		if err := w.sweepOnce(ctx); err != nil {
			t.Fatal(err)
		}
		hz, err := horizon(ctx, w.db().store.DB())
		if err != nil {
			t.Fatal(err)
		}
		if hz > left.Version {
			passed = true
			break
		}
		time.Sleep(w.lim.DeviceActivity / 10)
	}
	if !passed {
		t.Errorf("epilogue: the purge horizon never passed the cursor of %s (version %d)", long.name, left.Version)
	}
	work(long)
	if err := long.comeBack(ctx); err != nil {
		t.Fatal(err)
	}
	long.mustMu.Lock()
	why := long.mustRebuild
	long.mustMu.Unlock()
	t.Logf("epilogue: %s came back past the purge horizon, rebuilt %d times in all (must still: %q)", long.name, long.rebuilds.Load(), why)
}
