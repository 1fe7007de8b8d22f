package push_test

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/push"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// rename saves new names for the customers ids on the device.
func rename(t *testing.T, db *localdb.DB, name string, ids ...string) {
	t.Helper()
	ctx := testCtx(t)
	for _, id := range ids {
		var c testkit.Customer
		if err := db.Get(ctx, &c, id); err != nil {
			t.Fatal(err)
		}
		c.Name = name
		if err := db.Save(ctx, &c); err != nil {
			t.Fatal(err)
		}
	}
}

// G2 across runs of sends: a push that failed with batch 3 staged past
// the lost batch 2 is resumed, after a restart, with larger batches (the
// resumed push ends at batch 2). What the failed run staged past the
// acknowledged batches is dropped by the resumed run's first batch: the
// session commits as resumed, and the rows edited since on the device are
// not overwritten on the server by their earlier copies in the stale
// batch 3, committed after batch 2.
func TestPushRestartDropsTheEarlierRunsBatches(t *testing.T) {
	ctx := testCtx(t)
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	path := filepath.Join(t.TempDir(), "device.db")
	wl := &wireLog{}
	broken := &testkit.FaultTransport{Base: wl, Decide: func(r *http.Request, kind string, n int) testkit.Fault {
		if strings.HasSuffix(r.URL.Path, "/batches/2") {
			return testkit.DropRequest
		}
		return testkit.Pass
	}}
	db, api := device(t, reg, srv.URL, broken, path)
	ids := saveCustomers(t, db, 10)
	if _, err := push.New(db.Syncer(), api, push.Options{BatchSize: 2, InFlight: 2}).Push(ctx); err == nil {
		t.Fatal("Push succeeded through a dropped batch")
	}
	staged3 := false
	for _, b := range wl.take() {
		staged3 = staged3 || b.seq == "3"
	}
	if !staged3 {
		t.Fatal("batch 3 was not on the wire with batch 2: nothing to test")
	}
	rename(t, db, "edited after the failure", ids[6], ids[7]) // batch 3's rows
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db2, api2 := device(t, reg, srv.URL, &testkit.FaultTransport{}, path)
	if _, err := push.New(db2.Syncer(), api2, push.Options{BatchSize: 8, InFlight: 2}).Push(ctx); err != nil {
		t.Fatal(err)
	}
	if n := serverInt(t, srv, `SELECT count(*) FROM customers`); n != 10 {
		t.Errorf("server customers=%d, want 10", n)
	}
	if n := serverInt(t, srv, `SELECT count(*) FROM customers WHERE name = 'edited after the failure'`); n != 2 {
		t.Errorf("server holds %d of the 2 edits made after the failure: the failed run's batch 3 was committed over them", n)
	}
	if n := serverInt(t, srv, `SELECT count(*) FROM _tether_sessions`); n != 1 {
		t.Errorf("server sessions=%d, want 1: the resumed push commits the session it resumes", n)
	}
	if n := pending(t, db2); n != 0 {
		t.Errorf("Pending=%d, want 0", n)
	}
}

// G2 and G3 with two batches on the wire: under lost requests, lost
// answers, duplicated and delayed requests and 500s on the batches, the
// pushes that follow put every row on the server once, as the device
// holds it, and leave nothing dirty.
func TestPushTwoInFlightUnderFaults(t *testing.T) {
	for seed := range uint64(4) {
		t.Run("seed "+string(rune('0'+seed)), func(t *testing.T) {
			ctx := testCtx(t)
			reg := testkit.Registry(t)
			srv := testkit.NewServer(t, reg, server.Options{})
			var mu sync.Mutex
			rng := rand.New(rand.NewPCG(seed, 24))
			faults := []testkit.Fault{testkit.Pass, testkit.Pass, testkit.Pass, testkit.DropRequest, testkit.DropResponse,
				testkit.Duplicate, testkit.Delay, testkit.Status500}
			ft := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
				if kind != "batches" && kind != "commit" {
					return testkit.Pass
				}
				mu.Lock()
				defer mu.Unlock()
				return faults[rng.IntN(len(faults))]
			}}
			db, api := device(t, reg, srv.URL, ft, "")
			ids := saveCustomers(t, db, 40)
			eng := push.New(db.Syncer(), api, push.Options{BatchSize: 3, InFlight: 2})
			var err error
			for i := range 200 {
				if i == 10 {
					rename(t, db, "edited between pushes", ids[20:26]...)
				}
				// An edit made while a session is under way stays dirty
				// past its commit (G2): pushes go on until none is left.
				if _, err = eng.Push(ctx); err == nil && i > 10 && pending(t, db) == 0 {
					break
				}
			}
			if err != nil {
				t.Fatalf("the last push: %v", err)
			}
			if n := pending(t, db); n != 0 {
				t.Errorf("Pending=%d, want 0", n)
			}
			if n := serverInt(t, srv, `SELECT count(*) FROM customers`); n != 40 {
				t.Errorf("server customers=%d, want 40", n)
			}
			if n := serverInt(t, srv, `SELECT count(*) FROM customers WHERE name = 'edited between pushes'`); n != 6 {
				t.Errorf("server holds %d of the 6 edits, want 6", n)
			}
			for _, id := range ids {
				var c testkit.Customer
				if err := db.Get(ctx, &c, id); err != nil {
					t.Fatal(err)
				}
				if n := serverInt(t, srv, `SELECT count(*) FROM customers WHERE id = ? AND name = ?`, id, c.Name); n != 1 {
					t.Errorf("customer %s: the server does not hold the device's name %q", id, c.Name)
				}
			}
		})
	}
}

// earlierServer makes a server look like one before run generations: its
// batch answers lose "runs", and a batch naming a base is refused as that
// server refuses an unknown parameter. It records the most batches that
// were on the wire at once.
type earlierServer struct {
	mu               sync.Mutex
	onWire, most     int
	withBase, served int
}

func (e *earlierServer) RoundTrip(r *http.Request) (*http.Response, error) {
	if !strings.Contains(r.URL.Path, "/batches/") {
		return http.DefaultTransport.RoundTrip(r)
	}
	e.mu.Lock()
	e.onWire++
	e.most = max(e.most, e.onWire)
	e.served++
	refuse := r.URL.Query().Has(wire.BatchBase)
	if refuse {
		e.withBase++
	}
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.onWire--
		e.mu.Unlock()
	}()
	if refuse {
		body := `{"error":{"code":"bad_request","message":"unknown parameter \"base\""}}`
		return &http.Response{StatusCode: 400, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: r}, nil
	}
	r = r.Clone(r.Context())
	r.Header.Del("Accept-Encoding") // a plain answer, to rewrite
	res, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return nil, err
	}
	b = bytes.ReplaceAll(b, []byte(`"runs":true,`), nil)
	b = bytes.ReplaceAll(b, []byte(`,"runs":true`), nil)
	res.Body, res.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
	res.Header.Del("Content-Length")
	return res, nil
}

// A server that does not say it keeps runs apart (one before run
// generations) gets one batch at a time and no base parameter, and the
// push of many batches completes in one call.
func TestPushToAnEarlierServerSendsOneBatchAtATime(t *testing.T) {
	ctx := testCtx(t)
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	es := &earlierServer{}
	db, api := device(t, reg, srv.URL, es, "")
	saveCustomers(t, db, 20)
	res, err := push.New(db.Syncer(), api, push.Options{BatchSize: 3, InFlight: 2}).Push(ctx)
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	if res.Rows["customers"] != 20 || pending(t, db) != 0 {
		t.Errorf("pushed %v, Pending=%d; want 20 customers and 0", res.Rows, pending(t, db))
	}
	if es.withBase != 0 || es.most != 1 || es.served != 7 {
		t.Errorf("%d batches with base=, at most %d on the wire, %d batch requests; want 0, 1 and 7", es.withBase, es.most, es.served)
	}
	if n := serverInt(t, srv, `SELECT count(*) FROM customers`); n != 20 {
		t.Errorf("server customers=%d, want 20", n)
	}

	// The same server saying it keeps runs apart gets two at a time:
	// batches 1 and 2, whichever comes first, wait on the way (10 s at
	// most) for the other.
	srv2 := testkit.NewServer(t, reg, server.Options{})
	var mu sync.Mutex
	onWire, most, met := 0, 0, 0
	both := make(chan struct{})
	db2, api2 := device(t, reg, srv2.URL, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if strings.Contains(r.URL.Path, "/batches/") {
			mu.Lock()
			onWire++
			most = max(most, onWire)
			mu.Unlock()
			defer func() { mu.Lock(); onWire--; mu.Unlock() }()
		}
		if strings.HasSuffix(r.URL.Path, "/batches/1") || strings.HasSuffix(r.URL.Path, "/batches/2") {
			mu.Lock()
			met++
			if met == 2 {
				close(both)
			}
			mu.Unlock()
			select {
			case <-both:
			case <-time.After(10 * time.Second):
			}
		}
		return http.DefaultTransport.RoundTrip(r)
	}), "")
	saveCustomers(t, db2, 20)
	if _, err := push.New(db2.Syncer(), api2, push.Options{BatchSize: 3, InFlight: 2}).Push(ctx); err != nil {
		t.Fatalf("Push: %v", err)
	}
	if most != 2 {
		t.Errorf("at most %d batches on the wire to a server that keeps runs apart, want 2", most)
	}
}

// roundTripFunc is an http.RoundTripper of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
