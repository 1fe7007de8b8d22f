package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
)

// aGroup and aItem are the table pair of TestAtomicVisibility: each
// session writes one group and its items, never changed after.
type aGroup struct {
	entity.Meta `sync:"groups,1"`
	ID          string `db:"id"`
	Size        int64  `db:"size"`
}

type aItem struct {
	entity.Meta `sync:"items,2"`
	ID          string `db:"id"`
	GroupID     string `db:"group_id,ref=groups"`
}

// sample is what the reader's app saw at one moment: each group it held
// and how many of its items.
type sample map[string]int

// TestAtomicVisibility checks G4 on the device, under faults: writers
// commit sessions of one group and 1 to 700 items (many larger than the
// reader's pages of 150 rows) while a reader pulls through a transport
// that loses answers and fails requests, and is closed and reopened in the
// middle of its pulls; an app polls the reader's database all along. Every
// state the app saw must be the server's state after some version: whole
// groups only, and every group committed before the latest one it saw.
func TestAtomicVisibility(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test ./sim -run TestAtomicVisibility -sim.seed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 21))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	reg := entity.NewRegistry()
	if err := reg.Register(aGroup{}, aItem{}); err != nil {
		t.Fatal(err)
	}
	srv := testkit.NewServer(t, reg, server.Options{Logger: quiet})
	sessions := max(30, *opsFlag/100)

	// The writers: three devices, sessions of random sizes.
	type plan struct{ sizes []int }
	plans := make([]plan, 3)
	for i := range sessions {
		n := 1 + rng.IntN(700)
		if rng.IntN(3) == 0 {
			n = 1 + rng.IntN(5)
		}
		plans[i%3].sizes = append(plans[i%3].sizes, n)
	}
	var writers sync.WaitGroup
	errs := make(chan error, 16)
	for w, p := range plans {
		dev := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Token: "token-ada"})
		writers.Add(1)
		go func() {
			defer writers.Done()
			for s, n := range p.sizes {
				err := dev.DB.Update(ctx, func(tx *localdb.Tx) error {
					g := aGroup{ID: fmt.Sprintf("g%d-%03d", w, s), Size: int64(n)}
					if err := tx.Save(ctx, &g); err != nil {
						return err
					}
					for i := range n {
						if err := tx.Save(ctx, &aItem{ID: fmt.Sprintf("%s-%04d", g.ID, i), GroupID: g.ID}); err != nil {
							return err
						}
					}
					return nil
				})
				if err == nil {
					_, err = dev.Co.SyncNow(ctx)
				}
				if err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
			}
		}()
	}

	// The reader, through faults, and the app polling its database.
	var mu sync.Mutex
	frng := rand.New(rand.NewPCG(seed, 22))
	faults := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
		mu.Lock()
		defer mu.Unlock()
		if kind != "changes" || frng.IntN(8) != 0 {
			return testkit.Pass
		}
		return []testkit.Fault{testkit.DropResponse, testkit.Status503, testkit.Reset, testkit.Truncate}[frng.IntN(4)]
	}}
	path := filepath.Join(t.TempDir(), "reader.db")
	seen := map[string]sample{}
	var polls int
	once := func(db *localdb.DB) {
		rows, err := db.SQL().QueryContext(ctx, `SELECT g.id, (SELECT count(*) FROM items i WHERE i.group_id = g.id AND NOT i._deleted)
			FROM groups g WHERE NOT g._deleted ORDER BY g.id`)
		if err != nil {
			return
		}
		defer rows.Close()
		s := sample{}
		var key strings.Builder
		for rows.Next() {
			var id string
			var n int
			if rows.Scan(&id, &n) == nil {
				s[id] = n
				fmt.Fprintf(&key, "%s:%d,", id, n)
			}
		}
		polls++
		seen[key.String()] = s
	}
	poll := func(db *localdb.DB, stop <-chan struct{}) {
		for i := 0; i < 200000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			once(db)
		}
	}
	newClient := func(rt http.RoundTripper) *client.Client {
		return client.New(srv.URL, client.Options{Token: "token-bob", Transport: rt, Timeout: 10 * time.Second})
	}
	writing := make(chan struct{})
	go func() { writers.Wait(); close(writing) }()
	for round := 0; ; round++ {
		db, err := localdb.OpenWith(ctx, path, reg, localdb.Options{})
		if err != nil {
			t.Fatal(err)
		}
		co := coordinator.New(db, newClient(faults), coordinator.Options{PullBatchSize: 150, InitialBackoff: time.Millisecond,
			MaxBackoff: 20 * time.Millisecond, MaxElapsed: 30 * time.Second, Logger: quiet})
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { defer close(done); poll(db, stop) }()
		// A few syncs, then the process goes: closed in the middle of
		// whatever it does.
		for range 1 + rng.IntN(3) {
			sctx, scancel := context.WithTimeout(ctx, time.Duration(20+rng.IntN(200))*time.Millisecond)
			co.SyncNow(sctx)
			scancel()
		}
		close(stop)
		<-done
		co.Close()
		db.Close()
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
		select {
		case <-writing:
		default:
			if round < 500 {
				continue
			}
			t.Fatal("the writers did not finish")
		}
		// Written: one last sync without a deadline, and the check.
		db, err = localdb.OpenWith(ctx, path, reg, localdb.Options{})
		if err != nil {
			t.Fatal(err)
		}
		co = coordinator.New(db, newClient(http.DefaultTransport), coordinator.Options{PullBatchSize: 150, Logger: quiet})
		if _, err := co.SyncNow(ctx); err != nil {
			t.Fatal(err)
		}
		once(db)
		if polls == 0 {
			t.Fatal("no final sample")
		}
		co.Close()
		db.Close()
		break
	}

	// The server's commit order of the groups.
	version := map[string]int64{}
	size := map[string]int{}
	rows, err := srv.Store.DB().QueryContext(ctx, `SELECT id, size, _version FROM groups`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var n, v int64
		if err := rows.Scan(&id, &n, &v); err != nil {
			t.Fatal(err)
		}
		version[id], size[id] = v, int(n)
	}
	rows.Close()
	if len(version) != sessions {
		t.Fatalf("the server holds %d groups, want %d", len(version), sessions)
	}
	order := slices.SortedFunc(func(yield func(string) bool) {
		for id := range version {
			if !yield(id) {
				return
			}
		}
	}, func(a, b string) int { return int(version[a] - version[b]) })
	bad := 0
	for key, s := range seen {
		var latest int64
		for id, n := range s {
			if n != size[id] {
				t.Errorf("the app saw group %s with %d of its %d items", id, n, size[id])
				bad++
			}
			latest = max(latest, version[id])
		}
		for _, id := range order {
			if version[id] > latest {
				break
			}
			if _, ok := s[id]; !ok {
				t.Errorf("the app saw a group of version %d without group %s of version %d", latest, id, version[id])
				bad++
				break
			}
		}
		if bad > 10 {
			t.Fatalf("sample %q: and more", key)
		}
	}
	t.Logf("%d groups in %d sessions, %d polls, %d distinct states seen", len(version), sessions, polls, len(seen))
	if len(seen) < 3 {
		t.Errorf("the app saw only %d distinct states: the test saw no pull under way", len(seen))
	}
}
