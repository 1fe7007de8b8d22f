package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
)

// guard bounds every wait of these tests; it is a hang detector, not a
// speed requirement.
const guard = 60 * time.Second

// joined is a context that tells the test when SyncNow waits on it:
// SyncNow selects on Done once it has joined a run (or queued for one).
type joined struct {
	context.Context
	once sync.Once
	in   chan struct{}
}

func join(ctx context.Context) *joined {
	return &joined{Context: ctx, in: make(chan struct{})}
}

func (j *joined) Done() <-chan struct{} {
	j.once.Do(func() { close(j.in) })
	return j.Context.Done()
}

// wait fails the test when ch is not closed (or sent on) within guard.
func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(guard):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

type result struct {
	rep coordinator.Report
	err error
}

// syncAsync runs SyncNow in a goroutine.
func syncAsync(co *coordinator.Coordinator, ctx context.Context) <-chan result {
	out := make(chan result, 1)
	go func() {
		rep, err := co.SyncNow(ctx)
		out <- result{rep, err}
	}()
	return out
}

func save(t *testing.T, d *testkit.Device, n int, prefix string) {
	t.Helper()
	for i := range n {
		c := testkit.Customer{Name: fmt.Sprintf("%s-%03d", prefix, i)}
		if err := d.DB.Save(context.Background(), &c); err != nil {
			t.Fatal(err)
		}
	}
}

func serverCount(t *testing.T, srv *testkit.Server, where string, args ...any) int {
	t.Helper()
	var n int
	q := `SELECT count(*) FROM "customers" WHERE "_tenant" = 'acme'`
	if where != "" {
		q += " AND " + where
	}
	if err := testkit.OpenServerDB(t, srv.Path).QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func pending(t *testing.T, d *testkit.Device) int {
	t.Helper()
	n, err := d.DB.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func newServer(t *testing.T) (*entity.Registry, *testkit.Server) {
	reg := testkit.Registry(t)
	return reg, testkit.NewServer(t, reg, server.Options{})
}

// A record saved while a sync is pulling, then "Sync now": the call must
// not return with the record still only on the device. It waits for the
// sync under way and for a follow-up that pushes the record.
func TestSyncNowReturnsAfterARunStartedAfterTheCall(t *testing.T) {
	reg, srv := newServer(t)
	reached, release := make(chan struct{}), make(chan struct{})
	ft := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
		if kind == "changes" && n == 0 { // the first run's pull
			close(reached)
			<-release
		}
		return testkit.Pass
	}}
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Transport: ft})
	save(t, a, 2, "early")
	first := syncAsync(a.Co, context.Background())
	wait(t, reached, "the first run's pull")

	late := testkit.Customer{Name: "typed during the pull"}
	if err := a.DB.Save(context.Background(), &late); err != nil {
		t.Fatal(err)
	}
	ctx := join(context.Background())
	second := syncAsync(a.Co, ctx)
	wait(t, ctx.in, "the second SyncNow to wait")
	close(release)

	if r := wait(t, first, "the first SyncNow"); r.err != nil {
		t.Fatalf("first SyncNow: %v", r.err)
	}
	r := wait(t, second, "the second SyncNow")
	if r.err != nil {
		t.Fatalf("second SyncNow: %v", r.err)
	}
	// Checked right as the second call returns, before anything else runs.
	if n := pending(t, a); n != 0 {
		t.Errorf("Pending=%d after SyncNow returned, want 0: the edit made before the call was not sent", n)
	}
	if n := serverCount(t, srv, `"id" = ?`, late.ID); n != 1 {
		t.Errorf("server holds %d copies of the record saved before the call, want 1", n)
	}
	if r.rep.Pushed["customers"] != 1 {
		t.Errorf("second call's report pushed %v, want the 1 late record", r.rep.Pushed)
	}
	if n := ft.Count("changes"); n != 2 {
		t.Errorf("%d runs, want 2 (the one under way and one follow-up)", n)
	}
}

// Calls made during a run coalesce into one follow-up run, however many.
func TestSyncNowCoalescesCallsIntoOneFollowUp(t *testing.T) {
	reg, srv := newServer(t)
	reached, release := make(chan struct{}), make(chan struct{})
	ft := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
		if kind == "changes" && n == 0 {
			close(reached)
			<-release
		}
		return testkit.Pass
	}}
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Transport: ft})
	save(t, a, 3, "c")
	first := syncAsync(a.Co, context.Background())
	wait(t, reached, "the first run")
	if !a.Co.Syncing() {
		t.Error("Syncing()=false while a run is under way")
	}
	var calls []<-chan result
	for range 5 {
		ctx := join(context.Background())
		calls = append(calls, syncAsync(a.Co, ctx))
		wait(t, ctx.in, "a SyncNow to wait")
	}
	close(release)
	if r := wait(t, first, "the first SyncNow"); r.err != nil {
		t.Fatal(r.err)
	}
	for i, ch := range calls {
		if r := wait(t, ch, "a coalesced SyncNow"); r.err != nil {
			t.Errorf("call %d: %v", i, r.err)
		}
	}
	if n := ft.Count("changes"); n != 2 {
		t.Errorf("%d runs for 1 call and 5 calls during it, want 2", n)
	}
	if a.Co.Syncing() {
		t.Error("Syncing()=true after every call returned and nothing is queued")
	}
	if n := serverCount(t, srv, ""); n != 3 {
		t.Errorf("server holds %d rows, want 3", n)
	}
}

// Rows saved during a push go up in the same run; the progress total grows
// with them and never falls below done.
func TestProgressTotalNeverBelowDone(t *testing.T) {
	reg, srv := newServer(t)
	var dev atomic.Pointer[testkit.Device]
	ft := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
		if kind == "batches" && n == 0 { // the user types while the push runs
			for i := range 12 {
				c := testkit.Customer{Name: fmt.Sprintf("typed-%02d", i)}
				if err := dev.Load().DB.Save(context.Background(), &c); err != nil {
					panic(err)
				}
			}
		}
		return testkit.Pass
	}}
	var mu sync.Mutex
	var seen []coordinator.Progress
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Transport: ft, Co: coordinator.Options{
		PushBatchSize: 5,
		OnProgress: func(p coordinator.Progress) {
			mu.Lock()
			seen = append(seen, p)
			mu.Unlock()
		},
	}})
	dev.Store(a)
	save(t, a, 20, "c")
	rep := a.Sync(t)
	if rep.Pushed["customers"] <= 20 {
		t.Fatalf("pushed %d rows: the rows typed during the push did not go up in the same run, so this test shows nothing", rep.Pushed["customers"])
	}
	mu.Lock()
	defer mu.Unlock()
	lastPush := coordinator.Progress{}
	for _, p := range seen {
		// The push's total is known; other phases may say 0 (unknown).
		if p.Done > p.Total && (p.Phase == coordinator.PhasePush || p.Total != 0) {
			t.Errorf("progress %+v: done above total", p)
		}
		if p.Phase == coordinator.PhasePush {
			lastPush = p
		}
	}
	if lastPush.Done != rep.Pushed["customers"] || lastPush.Total != lastPush.Done {
		t.Errorf("last push progress %+v, want done = total = %d rows pushed", lastPush, rep.Pushed["customers"])
	}
	if last := seen[len(seen)-1]; last.Phase != coordinator.PhaseDone {
		t.Errorf("last progress %+v, want phase done", last)
	}
	if n := serverCount(t, srv, ""); n != 32 {
		t.Errorf("server holds %d rows, want 32", n)
	}
}

// The only caller gives up mid-push: the run stops after the batch on the
// wire, commits nothing, and the next sync resumes with the first batch
// not acknowledged; every row reaches the server once.
func TestCancelledSyncNowStopsAtASafePoint(t *testing.T) {
	testStopAtASafePoint(t, false)
}

// Shutdown (SIGTERM) stops a run at the same safe point.
func TestShutdownStopsAtASafePoint(t *testing.T) {
	testStopAtASafePoint(t, true)
}

func testStopAtASafePoint(t *testing.T, shutdown bool) {
	reg, srv := newServer(t)
	reached, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var seqs []int // batch numbers delivered to the server, in order
	ft := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
		if !strings.Contains(r.URL.Path, "/batches/") || r.Context().Err() != nil {
			return testkit.Pass // a cancelled request never reaches the server
		}
		if n == 2 {
			close(reached)
			<-release
		}
		seq, err := strconv.Atoi(path.Base(r.URL.Path))
		if err != nil {
			panic(err)
		}
		mu.Lock()
		seqs = append(seqs, seq)
		mu.Unlock()
		return testkit.Pass
	}}
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Transport: ft, Co: coordinator.Options{PushBatchSize: 10}})
	save(t, a, 50, "c")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	call := syncAsync(a.Co, ctx)
	wait(t, reached, "the third batch")
	var stopped <-chan error
	if shutdown {
		ch := make(chan error, 1)
		go func() { ch <- a.Co.Shutdown(context.Background()) }()
		stopped = ch
	} else {
		cancel()
		if r := wait(t, call, "the cancelled SyncNow"); !errors.Is(r.err, context.Canceled) {
			t.Fatalf("SyncNow=%v, want context.Canceled", r.err)
		}
	}
	close(release) // the batch on the wire completes: the safe point
	if shutdown {
		if err := wait(t, stopped, "Shutdown"); err != nil {
			t.Fatalf("Shutdown=%v", err)
		}
		if r := wait(t, call, "SyncNow during Shutdown"); !errors.Is(r.err, context.Canceled) {
			t.Fatalf("SyncNow=%v, want its run stopped (context.Canceled)", r.err)
		}
		if _, err := a.Co.SyncNow(context.Background()); !errors.Is(err, coordinator.ErrClosed) {
			t.Errorf("SyncNow after Shutdown=%v, want ErrClosed", err)
		}
	}
	deadline := time.Now().Add(guard)
	for a.Co.Syncing() {
		if time.Now().After(deadline) {
			t.Fatal("the run did not stop after its only caller left")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := ft.Count("commit"); n != 0 {
		t.Fatalf("%d commits: the run went on after its only caller left", n)
	}
	mu.Lock()
	before := len(seqs)
	// Two batches are on the wire (push.DefaultInFlight): 1 and 2 arrive
	// in either order, and batch 3 may have gone out beside the held
	// batch 2 once batch 1 was answered, before the stop.
	if got := fmt.Sprint(slices.Sorted(slices.Values(seqs))); got != "[0 1 2]" && got != "[0 1 2 3]" {
		t.Errorf("batches delivered before the stop: %v, want 0, 1, 2 and perhaps 3 (stop after the batches on the wire)", seqs)
	}
	sentBefore := slices.Max(seqs)
	mu.Unlock()
	if n := serverCount(t, srv, ""); n != 0 {
		t.Errorf("server shows %d rows of an uncommitted session", n)
	}

	if shutdown { // as after a restart: a new coordinator on the same file
		a.Co.Close()
		a.DB.Close()
		a = testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Transport: ft, Path: a.Path, Co: coordinator.Options{PushBatchSize: 10}})
	}
	a.Sync(t)
	mu.Lock()
	resumed := append([]int(nil), seqs[before:]...)
	mu.Unlock()
	// Batch 2, on the wire with batch 1 when the stop cut it, is sent
	// again when its answer was not recorded.
	got := slices.Sorted(slices.Values(resumed))
	if len(got) == 0 || got[0] < 2 || got[0] > sentBefore+1 || got[len(got)-1] != 4 || len(got) != 5-got[0] {
		t.Errorf("resumed sync sent batches %v, want batches from 2, 3 or %d to 4: acknowledged batches are not sent again, the others are", resumed, sentBefore+1)
	}
	if n := serverCount(t, srv, ""); n != 50 {
		t.Errorf("server holds %d rows, want 50", n)
	}
	if n := pending(t, a); n != 0 {
		t.Errorf("Pending=%d, want 0", n)
	}
}

// A caller that gives up does not stop a run another caller waits for.
func TestCancelledSyncNowKeepsARunOthersWaitFor(t *testing.T) {
	reg, srv := newServer(t)
	reached1, release1 := make(chan struct{}), make(chan struct{})
	reached2, release2 := make(chan struct{}), make(chan struct{})
	ft := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
		switch {
		case kind == "changes" && n == 0:
			close(reached1)
			<-release1
		case kind == "changes" && n == 1:
			close(reached2)
			<-release2
		}
		return testkit.Pass
	}}
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Transport: ft})
	first := syncAsync(a.Co, context.Background())
	wait(t, reached1, "the first run")
	save(t, a, 4, "c") // for the follow-up to push before its pull
	actx, cancelA := context.WithCancel(context.Background())
	ja, jb := join(actx), join(context.Background())
	callA := syncAsync(a.Co, ja)
	wait(t, ja.in, "call A to wait")
	callB := syncAsync(a.Co, jb)
	wait(t, jb.in, "call B to wait")
	close(release1)
	wait(t, first, "the first SyncNow")
	wait(t, reached2, "the follow-up run")
	cancelA() // B still waits for the follow-up, held in its pull
	if r := wait(t, callA, "call A"); !errors.Is(r.err, context.Canceled) {
		t.Errorf("call A=%v, want context.Canceled", r.err)
	}
	close(release2)
	r := wait(t, callB, "call B")
	if r.err != nil {
		t.Fatalf("call B=%v: the follow-up was stopped though B waited for it", r.err)
	}
	if r.rep.Pushed["customers"] != 4 || serverCount(t, srv, "") != 4 {
		t.Errorf("call B's run pushed %v, want the 4 rows", r.rep.Pushed)
	}
}
