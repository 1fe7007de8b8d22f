package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// requestLog records every request a device makes, as "METHOD kind".
type requestLog struct {
	mu   sync.Mutex
	reqs []string
	base http.RoundTripper
}

func (l *requestLog) RoundTrip(r *http.Request) (*http.Response, error) {
	l.mu.Lock()
	l.reqs = append(l.reqs, r.Method+" "+testkit.Kind(r))
	l.mu.Unlock()
	if l.base != nil {
		return l.base.RoundTrip(r)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// take returns the requests since the last take.
func (l *requestLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.reqs
	l.reqs = nil
	return out
}

// A sync costs the round trips it needs, no more: a field device on a
// satellite link pays each one. A first sync registers the device; later
// ones do not. A sync with nothing to do is one request; one whose push
// fits in one batch is two; a push of n batches is n requests. The pull
// after a push is one page however many pages the pushed rows would
// fill: the server passes over the device's own rows without reading
// them back.
func TestSyncRoundTrips(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	log := &requestLog{}
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Transport: log, Co: coordinator.Options{PushBatchSize: 10, PullBatchSize: 10}})
	b := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Token: "token-bob"})

	saveCustomers(t, a, 3, "first")
	a.Sync(t)
	if got, want := log.take(), []string{"POST devices", "PUT commit", "GET changes"}; !slices.Equal(got, want) {
		t.Errorf("first sync with 3 rows: %v, want %v", got, want)
	}
	a.Sync(t)
	if got, want := log.take(), []string{"GET changes"}; !slices.Equal(got, want) {
		t.Errorf("sync with nothing to do: %v, want %v", got, want)
	}
	saveCustomers(t, a, 1, "one")
	a.Sync(t)
	if got, want := log.take(), []string{"PUT commit", "GET changes"}; !slices.Equal(got, want) {
		t.Errorf("sync of one row: %v, want %v", got, want)
	}
	saveCustomers(t, a, 25, "three batches")
	a.Sync(t)
	if got, want := log.take(), []string{"PUT batches", "PUT batches", "PUT commit", "GET changes"}; !slices.Equal(got, want) {
		t.Errorf("sync of 25 rows in batches of 10: %v, want %v", got, want)
	}
	saveCustomers(t, b, 2, "from b")
	b.Sync(t)
	rep := a.Sync(t)
	if got, want := log.take(), []string{"GET changes"}; !slices.Equal(got, want) || rep.Pulled["customers"] != 2 {
		t.Errorf("sync pulling 2 rows: %v, pulled %v; want %v and 2 rows", got, rep.Pulled, want)
	}
	if n := serverCount(t, srv, `SELECT count(*) FROM customers`); n != 31 {
		t.Errorf("server holds %d customers, want 31", n)
	}
	assertConverged(t, srv, a, b)
}

// A device registers again when the server lost its registration (a
// database restored from before it registered), and goes on in the same
// sync.
func TestDeviceRegistersAgainWhenTheServerLostIt(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	log := &requestLog{}
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Transport: log})
	saveCustomers(t, a, 2, "c")
	a.Sync(t)
	db := srv.Store.DB()
	if _, err := db.Exec(`DELETE FROM _tether_devices`); err != nil {
		t.Fatal(err)
	}
	log.take()
	a.Sync(t) // a pull only: the server does not know the device
	if got, want := log.take(), []string{"GET changes", "POST devices", "GET changes"}; !slices.Equal(got, want) {
		t.Errorf("pull of a device the server lost: %v, want %v", got, want)
	}
	if _, err := db.Exec(`DELETE FROM _tether_devices`); err != nil {
		t.Fatal(err)
	}
	saveCustomers(t, a, 1, "more")
	rep := a.Sync(t) // a push first
	if got, want := log.take(), []string{"PUT commit", "POST devices", "PUT commit", "GET changes"}; !slices.Equal(got, want) {
		t.Errorf("push of a device the server lost: %v, want %v", got, want)
	}
	if rep.Pushed["customers"] != 1 || serverCount(t, srv, `SELECT count(*) FROM customers`) != 3 {
		t.Errorf("report %+v, server rows %d; want 1 pushed and 3 on the server", rep, serverCount(t, srv, `SELECT count(*) FROM customers`))
	}
	if n := serverCount(t, srv, `SELECT count(*) FROM _tether_devices`); n != 1 {
		t.Errorf("server knows %d devices, want the device registered again", n)
	}
}

// The answer to the request that commits can be lost whichever way: the
// request never arrived, or arrived and committed. The next sync asks the
// server which (by the batch's number and body digest) and neither loses a
// row nor applies one twice nor reports a conflict.
func TestLostLastBatchSettled(t *testing.T) {
	for name, fault := range map[string]testkit.Fault{"request lost": testkit.DropRequest, "answer lost": testkit.DropResponse} {
		t.Run(name, func(t *testing.T) {
			reg := testkit.Registry(t)
			srv := testkit.NewServer(t, reg, server.Options{})
			log := &requestLog{base: &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
				if kind == "commit" && n == 0 {
					return fault
				}
				return testkit.Pass
			}}}
			a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Transport: log, Co: coordinator.Options{PushBatchSize: 10}})
			saveCustomers(t, a, 15, "c")
			rep := a.Sync(t)
			if rep.Pushed["customers"] != 15 || rep.Conflicts != 0 {
				t.Errorf("Report=%+v, want 15 rows pushed, no conflict", rep)
			}
			reqs := log.take()
			// The retry asks about the session (POST commit) before anything else.
			settle := slices.Index(reqs, "POST commit")
			if settle < 0 || !slices.Contains(reqs[:settle], "PUT commit") {
				t.Errorf("requests %v: want the lost last batch settled with POST commit", reqs)
			}
			if n := serverCount(t, srv, `SELECT count(*) FROM customers`); n != 15 {
				t.Errorf("server holds %d customers, want 15", n)
			}
			if n := serverCount(t, srv, `SELECT count(*) FROM _tether_audit`); n != 15 {
				t.Errorf("audit log holds %d entries, want 15: a row was applied twice", n)
			}
			if n, _ := a.DB.Pending(ctx); n != 0 {
				t.Errorf("Pending=%d, want 0", n)
			}
			b := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Token: "token-bob"})
			b.Sync(t)
			assertConverged(t, srv, a, b)
		})
	}
}

// The request that commits, delivered twice (a proxy that retries it),
// is committed once, and the second delivery gets the first answer; a
// request carrying another batch for the committed session is refused.
func TestCommittingBatchDeliveredTwice(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	twice := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
		if kind == "commit" {
			return testkit.Duplicate
		}
		return testkit.Pass
	}}
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Transport: twice})
	saveCustomers(t, a, 3, "c")
	rep := a.Sync(t)
	if rep.Pushed["customers"] != 3 || rep.Attempts != 1 {
		t.Errorf("Report=%+v, want 3 rows in one attempt", rep)
	}
	if n := serverCount(t, srv, `SELECT coalesce(sum(version), 0) FROM _tether_tenants`); n != 1 {
		t.Errorf("server version %d, want 1: committed once", n)
	}
	// Another batch for the committed session: 409, nothing applied.
	session := ""
	if err := testkit.OpenServerDB(t, srv.Path).QueryRow(`SELECT id FROM _tether_sessions`).Scan(&session); err != nil {
		t.Fatal(err)
	}
	row := wire.Row{Table: "customers", ID: "01a22cda-b156-7934-906b-5cf4406331b5", HLC: "1796048859610.000000." + a.DB.DeviceID(),
		Values: map[string]any{"name": "late", "email": nil, "tags": nil}}
	_, err := a.API.SendBatch(ctx, a.DB.DeviceID(), session, 0, []wire.Row{row}, wire.BatchParams{Open: true, Commit: true})
	if !errors.Is(err, wire.ErrConflict) || !errors.Is(err, wire.ErrRefused) {
		t.Errorf("another last batch for a committed session: %v, want a refused ErrConflict", err)
	}
	if n := serverCount(t, srv, `SELECT count(*) FROM customers`); n != 3 {
		t.Errorf("server holds %d customers, want 3", n)
	}
}

// A gateway in front of a server that is down answers 502: the sync ends
// at once as offline, like one that cannot connect, and keeps every edit.
func TestGatewayWithoutServerIsOffline(t *testing.T) {
	reg := testkit.Registry(t)
	gateway := testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault { return testkit.Status502 }}
	a := testkit.NewDevice(t, reg, "http://127.0.0.1:1", testkit.DeviceOptions{Transport: &gateway})
	saveCustomers(t, a, 1, "c")
	rep, err := a.Co.SyncNow(ctx)
	if !errors.Is(err, coordinator.ErrOffline) || !errors.Is(err, client.ErrUnreachable) || rep.Attempts != 1 {
		t.Errorf("SyncNow=%v after %d attempts, want ErrOffline at once", err, rep.Attempts)
	}
	if n, _ := a.DB.Pending(ctx); n != 1 {
		t.Errorf("Pending=%d, want the edit kept", n)
	}
}

// A batch an earlier attempt staged without its answer arriving (a stale
// copy) cannot be taken for the last batch of a later attempt whose
// request was lost: the settle drops it, and the rows go up again, none
// marked clean without being on the server.
func TestSettleDropsAStaleBatch(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	var mu sync.Mutex
	sent, batch1, last := 0, 0, 0
	ft := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
		if !strings.Contains(r.URL.Path, "/batches/") {
			return testkit.Pass
		}
		mu.Lock()
		defer mu.Unlock()
		sent++
		if sent <= 2 { // batches of 4, then 2 rows: too large, halved to 1 row
			return testkit.Status413
		}
		// With two batches on the wire, batch 2 may go out beside batch 1:
		// the faults follow the batches, not the order of the requests.
		if strings.HasSuffix(r.URL.Path, "/batches/1") && !r.URL.Query().Has(wire.BatchCommit) {
			if batch1++; batch1 == 1 { // batch 1 (1 row) staged, its answer lost
				return testkit.DropResponse
			}
		}
		if r.URL.Query().Has(wire.BatchCommit) {
			if last++; last == 1 { // the retry's last batch (rows 1 to 4, at batch 1) lost on the way
				return testkit.DropRequest
			}
		}
		return testkit.Pass
	}}
	log := &requestLog{base: ft}
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Transport: log, Co: coordinator.Options{PushBatchSize: 4}})
	saveCustomers(t, a, 5, "c")
	rep := a.Sync(t)
	if !slices.Contains(log.take(), "POST commit") {
		t.Error("the lost last batch was not settled")
	}
	if n := serverCount(t, srv, `SELECT count(*) FROM customers`); n != 5 {
		t.Errorf("server holds %d customers, want 5", n)
	}
	if n, _ := a.DB.Pending(ctx); n != 0 || rep.Conflicts != 0 {
		t.Errorf("Pending=%d, %d conflicts; want 0 and 0", n, rep.Conflicts)
	}
	b := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Token: "token-bob"})
	b.Sync(t)
	assertConverged(t, srv, a, b)
}

// A 413 from a proxy in front of the server (no API error body) refuses
// the last batch whole: it is halved and sent again in the same sync.
func TestProxyRefusesLargeLastBatch(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	ft := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
		if kind == "commit" && n == 0 {
			return testkit.ProxyStatus413
		}
		return testkit.Pass
	}}
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Transport: ft, Co: coordinator.Options{PushBatchSize: 4}})
	saveCustomers(t, a, 4, "c")
	rep := a.Sync(t)
	if rep.Pushed["customers"] != 4 || serverCount(t, srv, `SELECT count(*) FROM customers`) != 4 {
		t.Errorf("Report=%+v, server rows %d; want 4 pushed and on the server", rep, serverCount(t, srv, `SELECT count(*) FROM customers`))
	}
	if n, _ := a.DB.Pending(ctx); n != 0 {
		t.Errorf("Pending=%d, want 0", n)
	}
}

// A batch request delayed on the way (a proxy that retried it late) does
// not undo the newer copy of that batch a later attempt staged: the server
// refuses a batch from an earlier attempt. Without that, the server
// committed the older content while the device marked the row clean at the
// newer one.
func TestDelayedBatchOfAnEarlierAttempt(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	var a *testkit.Device
	var ids []string
	var delayed *http.Request
	var delayedBody []byte
	var replayed atomic.Int32
	var first sync.Once
	ft := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
		if kind == "batches" && strings.HasSuffix(r.URL.Path, "/batches/1") {
			fault := testkit.Pass
			first.Do(func() {
				// Attempt 1 of batch 1: kept for a late copy, its answer lost,
				// and the row edited before attempt 2 reads it again.
				delayedBody, _ = io.ReadAll(r.Body)
				r.Body = io.NopCloser(bytes.NewReader(delayedBody))
				delayed = r.Clone(context.Background())
				list, err := localdb.Query[testkit.Customer](ctx, a.DB, "id = ?", ids[2])
				if err != nil || len(list) != 1 {
					t.Errorf("read row 2: %v", err)
					return
				}
				list[0].Name = "edited between attempts"
				if err := a.DB.Save(ctx, &list[0]); err != nil {
					t.Error(err)
				}
				fault = testkit.DropResponse
			})
			return fault
		}
		if kind == "commit" && delayed != nil && replayed.Add(1) == 1 {
			// The late copy of attempt 1 arrives before the last batch.
			late := delayed.Clone(context.Background())
			late.Body, late.ContentLength, late.GetBody = io.NopCloser(bytes.NewReader(delayedBody)), int64(len(delayedBody)), nil
			if resp, err := http.DefaultTransport.RoundTrip(late); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusConflict {
					t.Errorf("the late copy of attempt 1 got %d, want 409", resp.StatusCode)
				}
			}
		}
		return testkit.Pass
	}}
	a = testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Transport: ft, Co: coordinator.Options{PushBatchSize: 2}})
	ids = saveCustomers(t, a, 5, "c")
	a.Sync(t)
	var name string
	if err := srv.Store.DB().QueryRow(`SELECT name FROM customers WHERE id = ?`, ids[2]).Scan(&name); err != nil || name != "edited between attempts" {
		t.Errorf("server holds %q (%v) for the row edited between attempts, want the edit", name, err)
	}
	if n, _ := a.DB.Pending(ctx); n != 0 {
		t.Errorf("Pending=%d, want 0", n)
	}
	b := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Token: "token-bob"})
	b.Sync(t)
	assertConverged(t, srv, a, b)
}
