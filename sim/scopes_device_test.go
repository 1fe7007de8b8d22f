package sim

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
)

// scDevice is a device of one person in TestScopes.
type scDevice struct {
	name, user string
	path, url  string
	w          *scWorld
	// syncMu is held for reading by every sync, and for writing while the
	// device is away.
	syncMu sync.RWMutex
	db     *localdb.DB
	co     *coordinator.Coordinator
	rng    *rand.Rand
	seq    int
	// attempts are the writes this device made that its person may not
	// make, in order (only its op goroutine appends, read at the end).
	attempts []attempt
	// mustRebuild says why the device must be rebuilt: it came back with
	// its cursor before the purge horizon ("" once rebuilt).
	mustMu      sync.Mutex
	mustRebuild string
	rebuilds    atomic.Int64
	log         *pullLog // what its pulls brought
}

// attempt is a write the device's person may not make: the row, and the
// marker its values carry.
type attempt struct {
	table, id, marker, what string
}

func openScDevice(name, user, path, url string, seed uint64, w *scWorld, pullBatch int) (*scDevice, error) {
	d := &scDevice{name: name, user: user, path: path, url: url, w: w, rng: rand.New(rand.NewPCG(seed, 21))}
	db, err := localdb.OpenWith(context.Background(), path, scopesRegistry(), localdb.Options{})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	d.db = db
	d.log = &pullLog{base: http.DefaultTransport.(*http.Transport).Clone()}
	api := client.New(url, client.Options{Token: "tok-" + user, Timeout: 10 * time.Second, Transport: d.log})
	d.co = coordinator.New(db, api, coordinator.Options{
		PushBatchSize: 7, PullBatchSize: pullBatch, Logger: quiet,
		InitialBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, MaxElapsed: 3 * time.Second,
		OnSync: func(rep coordinator.Report, _ error) {
			w.stats.evicted.Add(int64(rep.Evicted))
			if rep.Rebuilt {
				d.rebuilds.Add(1)
				w.stats.rebuilds.Add(1)
				d.mustMu.Lock()
				d.mustRebuild = ""
				d.mustMu.Unlock()
			}
		},
	})
	return d, nil
}

func (d *scDevice) close() {
	d.co.Close()
	d.db.Close()
}

// sync runs SyncNow, unless the device is away: then it waits for its
// return.
func (d *scDevice) sync(ctx context.Context) (coordinator.Report, error) {
	d.syncMu.RLock()
	defer d.syncMu.RUnlock()
	d.w.stats.syncs.Add(1)
	rep, err := d.co.SyncNow(ctx)
	if err != nil {
		d.w.stats.failedSync.Add(1)
	}
	return rep, err
}

// syncTolerant runs sync; under faults, failures are expected.
func (d *scDevice) syncTolerant(ctx context.Context) { d.sync(ctx) }

// pick returns a random id of the rows query (over the device's
// database) returns, or "".
func (d *scDevice) pick(ctx context.Context, query string, args ...any) (string, error) {
	var n int
	if err := d.db.SQL().QueryRowContext(ctx, `SELECT count(*) FROM (`+query+`)`, args...).Scan(&n); err != nil || n == 0 {
		return "", err
	}
	var id string
	err := d.db.SQL().QueryRowContext(ctx, query+` ORDER BY id LIMIT 1 OFFSET ?`, append(args, d.rng.IntN(n))...).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) { // removed by a pull meanwhile
		return "", nil
	}
	return id, err
}

// Honest picks pass over the rows a forbidden write of this device left
// (until the server's answer puts them back or removes them).
const (
	pickProject = `SELECT id FROM projects WHERE _deleted = 0 AND name NOT LIKE 'forbidden-%'`
	pickTask    = `SELECT id FROM tasks WHERE _deleted = 0`
	pickNote    = `SELECT id FROM notes WHERE _deleted = 0 AND owner_id = ? AND text NOT LIKE 'forbidden-%'`
	pickPost    = `SELECT id FROM board WHERE _deleted = 0`
	myTeams     = `SELECT DISTINCT team_id FROM memberships WHERE _deleted = 0 AND role NOT LIKE 'forbidden-%' AND user_id = ?`
)

func (d *scDevice) newID(kind string) string {
	d.seq++
	return fmt.Sprintf("%s-%s-%d-%d", d.name, kind, d.seq, d.rng.IntN(1_000_000))
}

// op performs one random local write: mostly what the person may write
// (as far as the device knows), sometimes what it may not (attempt).
// Expected failures (a row removed meanwhile) are not errors.
func (d *scDevice) op(ctx context.Context) error {
	x := d.rng.IntN(100)
	if x >= 90 {
		d.w.stats.attempts.Add(1)
		return d.forbidden(ctx, x-90)
	}
	d.w.stats.honest.Add(1)
	switch {
	case x < 12: // a project in one of my teams
		team, err := d.pick(ctx, `SELECT team_id AS id FROM (`+myTeams+`)`, d.user)
		if err != nil || team == "" {
			return err
		}
		return d.db.Save(ctx, &ScProject{ID: d.newID("p"), TeamID: team, Name: d.newID("name")})
	case x < 20: // rename a project
		id, err := d.pick(ctx, pickProject)
		if err != nil || id == "" {
			return err
		}
		name := d.newID("renamed")
		return ignoreNotFound(d.db.Update(ctx, func(tx *localdb.Tx) error {
			var p ScProject
			if err := tx.Get(ctx, &p, id); err != nil {
				return err
			}
			p.Name = name
			return tx.Save(ctx, &p)
		}))
	case x < 24: // move a project to another of my teams
		id, err := d.pick(ctx, pickProject)
		if err != nil || id == "" {
			return err
		}
		team, err := d.pick(ctx, `SELECT team_id AS id FROM (`+myTeams+`)`, d.user)
		if err != nil || team == "" {
			return err
		}
		return ignoreNotFound(d.db.Update(ctx, func(tx *localdb.Tx) error {
			var p ScProject
			if err := tx.Get(ctx, &p, id); err != nil {
				return err
			}
			p.TeamID = team
			return tx.Save(ctx, &p)
		}))
	case x < 26: // delete a project (brought back while it has live tasks)
		id, err := d.pick(ctx, pickProject)
		if err != nil || id == "" {
			return err
		}
		return ignoreNotFound(d.db.Delete(ctx, &ScProject{ID: id}))
	case x < 40: // a task of a project I see
		id, err := d.pick(ctx, pickProject)
		if err != nil || id == "" {
			return err
		}
		err = d.db.Save(ctx, &ScTask{ID: d.newID("task"), ProjectID: id, Title: d.newID("title")})
		return ignoreFK(err)
	case x < 48:
		id, err := d.pick(ctx, pickTask)
		if err != nil || id == "" {
			return err
		}
		title := d.newID("retitled")
		return ignoreNotFound(d.db.Update(ctx, func(tx *localdb.Tx) error {
			var k ScTask
			if err := tx.Get(ctx, &k, id); err != nil {
				return err
			}
			k.Title = title
			return tx.Save(ctx, &k)
		}))
	case x < 52: // plain SQL, tracked by triggers
		id, err := d.pick(ctx, pickTask)
		if err != nil || id == "" {
			return err
		}
		_, err = d.db.SQL().ExecContext(ctx, `UPDATE tasks SET done = 1 - done WHERE id = ?`, id)
		return err
	case x < 56:
		id, err := d.pick(ctx, pickTask)
		if err != nil || id == "" {
			return err
		}
		return ignoreNotFound(d.db.Delete(ctx, &ScTask{ID: id}))
	case x < 66: // my private notes
		n := ScNote{ID: d.newID("note"), OwnerID: d.user, Text: d.newID("text")}
		if err := d.db.Save(ctx, &n); err != nil {
			return err
		}
		d.w.addNote(d.user, n.ID)
		return nil
	case x < 72:
		id, err := d.pick(ctx, pickNote, d.user)
		if err != nil || id == "" {
			return err
		}
		text := d.newID("edited")
		return ignoreNotFound(d.db.Update(ctx, func(tx *localdb.Tx) error {
			var n ScNote
			if err := tx.Get(ctx, &n, id); err != nil {
				return err
			}
			n.Text = text
			return tx.Save(ctx, &n)
		}))
	case x < 75:
		id, err := d.pick(ctx, pickNote, d.user)
		if err != nil || id == "" {
			return err
		}
		return ignoreNotFound(d.db.Delete(ctx, &ScNote{ID: id}))
	case x < 83: // the board, which everyone writes
		return d.db.Save(ctx, &ScPost{ID: d.newID("post"), Author: d.user, Text: d.newID("post")})
	case x < 88:
		id, err := d.pick(ctx, pickPost)
		if err != nil || id == "" {
			return err
		}
		text := d.newID("reply")
		return ignoreNotFound(d.db.Update(ctx, func(tx *localdb.Tx) error {
			var p ScPost
			if err := tx.Get(ctx, &p, id); err != nil {
				return err
			}
			p.Text = text
			return tx.Save(ctx, &p)
		}))
	default:
		id, err := d.pick(ctx, pickPost)
		if err != nil || id == "" {
			return err
		}
		return ignoreNotFound(d.db.Delete(ctx, &ScPost{ID: id}))
	}
}

// forbidden writes a row the device's person may not write (whatever
// the memberships are by then), its values marked, and records it.
func (d *scDevice) forbidden(ctx context.Context, x int) error {
	d.seq++
	marker := fmt.Sprintf("%s%s-%d", forbiddenMark, d.name, d.seq)
	var a attempt
	var err error
	switch x {
	case 0: // a new project in the vault
		a = attempt{table: "projects", id: d.newID("vaultp"), what: "a new project in the vault"}
		err = d.db.Save(ctx, &ScProject{ID: a.id, TeamID: vaultTeam, Name: marker})
	case 1: // a project of the vault, which it does not hold, deleted
		a = attempt{table: "projects", id: d.w.vault[d.rng.IntN(len(d.w.vault))], what: "a vault project deleted"}
		err = d.db.Update(ctx, func(tx *localdb.Tx) error {
			p := ScProject{ID: a.id, TeamID: vaultTeam, Name: marker}
			if err := tx.Save(ctx, &p); err != nil {
				return err
			}
			return tx.Delete(ctx, &p)
		})
	case 2, 3: // a project of the vault, which it does not hold, overwritten
		a = attempt{table: "projects", id: d.w.vault[d.rng.IntN(len(d.w.vault))], what: "a vault project overwritten"}
		err = d.db.Save(ctx, &ScProject{ID: a.id, TeamID: vaultTeam, Name: marker})
	case 4: // a project it holds, moved into the vault
		id, perr := d.pick(ctx, pickProject)
		if perr != nil || id == "" {
			return perr
		}
		a = attempt{table: "projects", id: id, what: "a project moved into the vault"}
		err = d.db.Update(ctx, func(tx *localdb.Tx) error {
			var p ScProject
			if err := tx.Get(ctx, &p, id); err != nil {
				return err
			}
			p.TeamID, p.Name = vaultTeam, marker
			return tx.Save(ctx, &p)
		})
		if errors.Is(err, localdb.ErrNotFound) {
			return nil
		}
	case 5, 6: // a note of another person
		other := d.other()
		a = attempt{table: "notes", id: d.newID("theirs"), what: "a new note of " + other}
		err = d.db.Save(ctx, &ScNote{ID: a.id, OwnerID: other, Text: marker})
	case 7, 8: // a note of another person, which it does not hold, overwritten
		other := d.other()
		id := d.w.noteOf(other, d.rng)
		if id == "" {
			return nil
		}
		a = attempt{table: "notes", id: id, what: "a note of " + other + " overwritten"}
		err = d.db.Save(ctx, &ScNote{ID: id, OwnerID: other, Text: marker})
	default: // a membership of its own: Authorize refuses it
		a = attempt{table: "memberships", id: d.newID("member"), what: "a membership of its own"}
		err = d.db.Save(ctx, &ScMembership{ID: a.id, UserID: d.user, TeamID: scTeams[d.rng.IntN(len(scTeams))], Role: marker})
	}
	if err != nil {
		return fmt.Errorf("forbidden write (%s): %w", a.what, err)
	}
	a.marker = marker
	d.attempts = append(d.attempts, a)
	return nil
}

// other returns another person than the device's.
func (d *scDevice) other() string {
	for {
		if u := scUsers[d.rng.IntN(len(scUsers))]; u != d.user {
			return u
		}
	}
}

// ignoreFK ignores the refusal of a child row whose parent went (removed
// by a pull between the pick and the write).
func ignoreFK(err error) error {
	if err != nil && (errors.Is(err, localdb.ErrNotFound) || isFK(err)) {
		return nil
	}
	return err
}

func isFK(err error) bool {
	msg := strings.ToLower(fmt.Sprint(err))
	return strings.Contains(msg, "foreign key") || strings.Contains(msg, "references")
}

// absent takes d away: it stops syncing for e.dur while it goes on
// writing, then comes back. It returns the number of operations done.
func (d *scDevice) absent(ctx context.Context, e event, done *atomic.Int64) (int, error) {
	d.syncMu.Lock()
	end := time.Now().Add(e.dur)
	for k := range e.ops {
		if err := d.op(ctx); err != nil {
			d.syncMu.Unlock()
			return k, err
		}
		done.Add(1)
		time.Sleep(e.dur / time.Duration(e.ops+1))
	}
	time.Sleep(time.Until(end))
	if e.kind == evLong {
		d.w.stats.long.Add(1)
	} else {
		d.w.stats.short.Add(1)
	}
	return e.ops, d.comeBack(ctx)
}

// comeBack is called with d.syncMu held and releases it: when the
// device's cursor is before the purge horizon, it must be rebuilt.
func (d *scDevice) comeBack(ctx context.Context) error {
	d.w.gate.RLock()
	err := d.expectRebuild(ctx)
	d.w.gate.RUnlock()
	d.syncMu.Unlock()
	if err != nil {
		return err
	}
	for range 5 {
		if _, err := d.sync(ctx); err == nil {
			break
		}
	}
	return nil
}

// expectRebuild records that d must be rebuilt when its cursor is before
// the purge horizon. No sync of d may be under way.
func (d *scDevice) expectRebuild(ctx context.Context) error {
	cur, err := d.db.Syncer().Cursor(ctx)
	if err != nil {
		return err
	}
	c, err := server.ParseCursor(cur)
	if err != nil {
		return err
	}
	hz, err := horizon(ctx, d.w.db().store.DB())
	if err != nil || c.Version >= hz {
		return err
	}
	d.w.stats.pastHorizon.Add(1)
	d.mustMu.Lock()
	d.mustRebuild = fmt.Sprintf("came back with its cursor at version %d, before the purge horizon %d", c.Version, hz)
	d.mustMu.Unlock()
	return nil
}

// scRows reads the rows of table from db (a device's, or the server's
// when tenant is not ""), live ones only unless all: id to values.
func scRows(ctx context.Context, db *sql.DB, table, tenant, where string, args ...any) (map[string]string, error) {
	cols := scCols[table]
	q := fmt.Sprintf(`SELECT id, %s FROM %s AS r WHERE _deleted = 0`, joinCols(cols), table)
	if tenant != "" {
		q += ` AND _tenant = 'sim'`
	}
	if where != "" {
		q += " AND (" + where + ")"
	}
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("rows of %s: %w", table, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		vals := make([]any, len(cols)+1)
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("rows of %s: %w", table, err)
		}
		s := ""
		for i, v := range vals[1:] {
			if b, ok := v.([]byte); ok {
				v = string(b)
			}
			if i > 0 {
				s += "|"
			}
			s += fmt.Sprint(v)
		}
		out[fmt.Sprint(asString(vals[0]))] = s
	}
	return out, rows.Err()
}

func asString(v any) any {
	if b, ok := v.([]byte); ok {
		return string(b)
	}
	return v
}

func joinCols(cols []string) string {
	s := ""
	for i, c := range cols {
		if i > 0 {
			s += ", "
		}
		s += c
	}
	return s
}
