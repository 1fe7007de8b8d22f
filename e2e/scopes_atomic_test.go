package e2e

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// G4 (issue 21, item 1): the phases of a change of keys reach the app
// whole. Ada leaves team A and joins team B in one write; her device
// evicts A's rows and is granted B's over many pages, and an app reading
// its database meanwhile sees her old rows or her new ones, never a mix.
func TestScopesPhasesWhole(t *testing.T) {
	eachFS(t, server.Options{}, func(t *testing.T, e *fsEnv) {
		e.seed(t)
		var many []wire.Row
		for i := range 150 {
			many = append(many, task(fmt.Sprintf("tA-%03d", i), "pA1", "a"), task(fmt.Sprintf("tB-%03d", i), "pB1", "b"))
		}
		e.write(t, many...)
		ada := e.deviceWith(t, "ada", testkit.DeviceOptions{Co: coordinator.Options{PullBatchSize: 20}})
		ada.Sync(t)
		count := func() (a, b int) {
			err := ada.DB.SQL().QueryRowContext(ctx, `SELECT
				count(CASE WHEN p.team_id = 'A' THEN 1 END), count(CASE WHEN p.team_id = 'B' THEN 1 END)
				FROM tasks t JOIN projects p ON p.id = t.project_id WHERE NOT t."_deleted"`).Scan(&a, &b)
			if err != nil {
				t.Fatal(err)
			}
			return a, b
		}
		before := [2]int{}
		before[0], before[1] = count()
		if before[0] < 150 || before[1] != 0 {
			t.Fatalf("before the move ada holds %d tasks of A and %d of B, want A's only", before[0], before[1])
		}

		e.write(t, deleted(membership("m-ada-A", "ada", "A")), membership("m-ada-B", "ada", "B"))
		var (
			mu   sync.Mutex
			seen = map[[2]int]int{}
			stop atomic.Bool
			wg   sync.WaitGroup
		)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000 && !stop.Load(); i++ {
				var s [2]int
				s[0], s[1] = count()
				mu.Lock()
				seen[s]++
				mu.Unlock()
				time.Sleep(100 * time.Microsecond)
			}
		}()
		ada.Sync(t)
		stop.Store(true)
		wg.Wait()
		after := [2]int{}
		after[0], after[1] = count()
		if after[0] != 0 || after[1] < 150 {
			t.Fatalf("after the move ada holds %d tasks of A and %d of B, want B's only", after[0], after[1])
		}
		t.Logf("states seen (tasks of A, of B): %v", seen)
		for s, n := range seen {
			if s != before && s != after {
				t.Errorf("the app saw %d tasks of A and %d of B, %d times: want %v (before) or %v (after) only", s[0], s[1], n, before, after)
			}
		}
		e.checkHolds(t, ada, "ada")
	})
}
