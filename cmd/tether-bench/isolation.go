package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
)

// The isolation scenario: does one tenant's big work hurt another's
// syncs? Tenant A pushes and commits -isolation-sessions sessions of
// -isolation-rows rows each, one device after another, while a device of
// tenant B saves one row and calls SyncNow, over and over. It reports the
// p50, p99 and worst of B's syncs while A works, beside the same figures
// with A idle, for each server -max-session-rows of
// -isolation-session-rows (the knob that bounds how long one commit
// holds SQLite's single writer), with A's throughput under that bound.

// Tokens of the isolation scenario's two tenants.
const (
	tokenA = "bench-tenant-a"
	tokenB = "bench-tenant-b"
)

// isolationIdleSyncs is the number of B's syncs timed with A idle.
const isolationIdleSyncs = 100

// isolationMaxSyncs bounds B's syncs while A works, whatever A's time.
const isolationMaxSyncs = 100_000

// isolationResult is what one run of the isolation scenario measured.
type isolationResult struct {
	idle, busy latencies     // B's syncs with A idle, and while A pushes
	aRows      int           // rows A pushed
	aTook      time.Duration // A's syncs, added up
}

// latencies summarizes SyncNow latencies.
type latencies struct {
	n             int
	p50, p99, max time.Duration
}

func summarize(ds []time.Duration) latencies {
	s := slices.Clone(ds)
	slices.Sort(s)
	return latencies{n: len(s), p50: percentile(s, 50), p99: percentile(s, 99), max: s[len(s)-1]}
}

func (l latencies) String() string {
	return fmt.Sprintf("p50 %s, p99 %s, worst %s (%s syncs)", secs(l.p50), secs(l.p99), secs(l.max), thousands(l.n))
}

// isolationTemplates returns k closed device databases of n dirty rows
// each, all different rows: the sessions of tenant A.
func (b *bench) isolationTemplates(ctx context.Context, n, k int) ([]string, error) {
	for len(b.isoTemplates) < k {
		i := len(b.isoTemplates)
		p := b.path(fmt.Sprintf("isolation-template-%d", i))
		d, err := openDevice(ctx, p, "http://127.0.0.1:1", b.reg, deviceOptions{batch: b.cfg.batch})
		if err != nil {
			return nil, err
		}
		if err := fill(ctx, d.db, n, uint64(1000+i)); err != nil {
			d.Close()
			return nil, err
		}
		if err := d.Close(); err != nil {
			return nil, err
		}
		b.isoTemplates = append(b.isoTemplates, p)
	}
	return b.isoTemplates[:k], nil
}

// measureIsolation runs the isolation scenario once on a new server whose
// sessions hold at most maxSessionRows rows.
func (b *bench) measureIsolation(ctx context.Context, maxSessionRows int) (isolationResult, error) {
	n, k := b.cfg.isolationRows, b.cfg.isolationSessions
	tpls, err := b.isolationTemplates(ctx, n, k)
	if err != nil {
		return isolationResult{}, fmt.Errorf("tenant A's devices: %w", err)
	}
	auth := server.StaticTokens{tokenA: {Tenant: "a", User: "ada"}, tokenB: {Tenant: "b", User: "bob"}}
	store, err := b.openStore(b.path("isolation-server"))
	srv, err := startServerWith(store, err, server.Options{Auth: auth, Limits: server.Limits{MaxSessionRows: maxSessionRows}})
	if err != nil {
		return isolationResult{}, err
	}
	defer srv.Close()
	devB, err := openDevice(ctx, b.path("isolation-b"), srv.URL, b.reg, deviceOptions{batch: b.cfg.batch, token: tokenB,
		maxElapsed: time.Minute}) // a sync that waits behind a commit of A is measured, not failed
	if err != nil {
		return isolationResult{}, err
	}
	defer devB.Close()
	r := rand.New(rand.NewPCG(uint64(maxSessionRows), 4))
	var res isolationResult
	idle, err := syncsOfB(ctx, devB, r, isolationIdleSyncs, nil)
	if err != nil {
		return isolationResult{}, fmt.Errorf("tenant B, A idle: %w", err)
	}
	res.idle = summarize(idle)

	var (
		wg    sync.WaitGroup
		aErr  error
		aDone = make(chan struct{})
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(aDone)
		res.aRows, res.aTook, aErr = b.pushesOfA(ctx, srv.URL, tpls)
	}()
	busy, bErr := syncsOfB(ctx, devB, r, isolationMaxSyncs, aDone)
	wg.Wait()
	if err := errors.Join(aErr, bErr); err != nil {
		return isolationResult{}, err
	}
	if len(busy) == 0 {
		return isolationResult{}, errors.New("tenant B synced no time while A pushed")
	}
	res.busy = summarize(busy)
	if res.aRows != n*k {
		return isolationResult{}, fmt.Errorf("tenant A pushed %d rows, want %d", res.aRows, n*k)
	}
	return res, nil
}

// pushesOfA syncs a copy of each template, one after another, as devices
// of tenant A, and returns the rows they pushed and the time their syncs
// took (copying and opening the devices not counted).
func (b *bench) pushesOfA(ctx context.Context, url string, tpls []string) (rows int, took time.Duration, err error) {
	for i, tpl := range tpls {
		p := b.path(fmt.Sprintf("isolation-a-%d", i))
		if err := copyFile(p, tpl); err != nil {
			return rows, took, err
		}
		d, err := openDevice(ctx, p, url, b.reg, deviceOptions{batch: b.cfg.batch, token: tokenA, timeout: 5 * time.Minute,
			maxElapsed: 10 * time.Minute})
		if err != nil {
			return rows, took, err
		}
		start := time.Now()
		rep, err := d.co.SyncNow(ctx)
		took += time.Since(start)
		d.Close()
		if err != nil {
			return rows, took, fmt.Errorf("tenant A, device %d: %w", i, err)
		}
		rows += rep.Pushed["items"]
	}
	return rows, took, nil
}

// syncsOfB saves one new row on d and syncs it, most times, or until done
// is closed (after at least one sync), and returns the syncs' latencies.
func syncsOfB(ctx context.Context, d *device, r *rand.Rand, most int, done <-chan struct{}) ([]time.Duration, error) {
	var lat []time.Duration
	for i := range most {
		it := newItem(r, i)
		if err := d.db.Update(ctx, func(tx *localdb.Tx) error { return tx.Save(ctx, &it) }); err != nil {
			return lat, fmt.Errorf("save: %w", err)
		}
		start := time.Now()
		rep, err := d.co.SyncNow(ctx)
		if err != nil {
			return lat, fmt.Errorf("sync %d: %w", i+1, err)
		}
		lat = append(lat, time.Since(start))
		if rep.Pushed["items"] != 1 {
			return lat, fmt.Errorf("sync %d pushed %d rows, want 1", i+1, rep.Pushed["items"])
		}
		select {
		case <-done:
			return lat, nil
		default:
		}
	}
	return lat, nil
}

// isolationGoal is the target of B's p99 while A works, on PostgreSQL and
// MySQL, where commits of different tenants run in parallel.
const isolationGoal = 250 * time.Millisecond

// runIsolation is the isolation scenario, for each -isolation-session-rows.
func (b *bench) runIsolation(ctx context.Context, t *table, log func(string)) error {
	if !b.cfg.scenarios["isolation"] {
		return nil
	}
	n, k := b.cfg.isolationRows, b.cfg.isolationSessions
	for _, m := range b.cfg.isolationSessionRows {
		log(fmt.Sprintf("isolation: tenant A pushes %d × %d rows (-max-session-rows %d) while tenant B syncs one row at a time", k, n, m))
		res, err := b.measureIsolation(ctx, m)
		if err != nil {
			return fmt.Errorf("isolation scenario (-max-session-rows %d): %w", m, err)
		}
		what := fmt.Sprintf("isolation, -max-session-rows %s: tenant B's SyncNow of one new row", thousands(m))
		t.add(what+", tenant A idle", 1, res.idle.String(), "", nil)
		target, met := "", (*bool)(nil)
		if b.cfg.store != "sqlite" {
			ok := res.busy.p99 < isolationGoal
			target, met = "p99 < "+secs(isolationGoal), &ok
		}
		t.add(fmt.Sprintf("%s, while tenant A pushes %d sessions of %s rows", what, k, thousands(n)), 1, res.busy.String(), target, met)
		t.add(fmt.Sprintf("isolation, -max-session-rows %s: tenant A's pushes meanwhile", thousands(m)), res.aRows,
			perSec(res.aRows, res.aTook), "", nil)
	}
	return nil
}
