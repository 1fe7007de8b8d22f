package push_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/push"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// These tests run the push engine against a real device database (a
// SQLite file from localdb) and a real server on loopback; faults are
// injected only in the HTTP transport.

// testCtx bounds a test, so that a push that loops (a broken halving, a
// resume that never ends) fails instead of hanging.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// device opens the device database at path (a new file when ""), and a
// client of the server at url over rt, registered and bound to the tenant
// of token-ada.
func device(t testing.TB, reg *entity.Registry, url string, rt http.RoundTripper, path string) (*localdb.DB, *client.Client) {
	t.Helper()
	ctx := testCtx(t)
	if path == "" {
		path = filepath.Join(t.TempDir(), "device.db")
	}
	db, err := localdb.Open(ctx, path, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	api := client.New(url, client.Options{Token: "token-ada", Transport: rt, Timeout: 10 * time.Second})
	api.SetDeviceKey(db.DeviceID(), db.Syncer().DeviceKey())
	dev, err := api.RegisterDevice(ctx, db.DeviceID(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Syncer().BindTenant(ctx, dev.Tenant); err != nil {
		t.Fatal(err)
	}
	return db, api
}

// sentBatch is a batch request that reached the server.
type sentBatch struct {
	seq  string // the batch number in the request's path
	rows []wire.Row
}

func (b sentBatch) ids() []string {
	out := make([]string, len(b.rows))
	for i, r := range b.rows {
		out[i] = r.ID
	}
	return out
}

// wireLog is an http.RoundTripper that records the rows of every batch
// request it delivers to the server. As the Base of a FaultTransport it
// sees the requests that reach the server, not those dropped before.
type wireLog struct {
	mu      sync.Mutex
	batches []sentBatch
}

func (w *wireLog) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.Contains(r.URL.Path, "/batches/") && r.Body != nil {
		raw, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		body := raw
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(raw))
			if err != nil {
				return nil, err
			}
			if body, err = io.ReadAll(zr); err != nil {
				return nil, err
			}
		}
		var b wire.Batch
		if err := json.Unmarshal(body, &b); err != nil {
			return nil, fmt.Errorf("wireLog: batch body: %w", err)
		}
		w.mu.Lock()
		w.batches = append(w.batches, sentBatch{seq: path.Base(r.URL.Path), rows: b.Rows})
		w.mu.Unlock()
		r = r.Clone(r.Context())
		r.Body = io.NopCloser(bytes.NewReader(raw))
		r.ContentLength = int64(len(raw))
		r.GetBody = nil
	}
	return http.DefaultTransport.RoundTrip(r)
}

// take returns the batches recorded so far and forgets them, in batch
// number order (two batches on the wire reach the server in either order),
// the copies of one number in the order they arrived.
func (w *wireLog) take() []sentBatch {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.batches
	w.batches = nil
	slices.SortStableFunc(out, func(a, b sentBatch) int {
		x, _ := strconv.Atoi(a.seq)
		y, _ := strconv.Atoi(b.seq)
		return x - y
	})
	return out
}

func newV7(t *testing.T) string {
	t.Helper()
	u, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	return u.String()
}

// saveCustomers saves n new customers in one transaction and returns
// their ids in id order, the order in which they are pushed.
func saveCustomers(t testing.TB, db *localdb.DB, n int) []string {
	t.Helper()
	ctx := testCtx(t)
	ids := make([]string, n)
	err := db.Update(ctx, func(tx *localdb.Tx) error {
		for i := range ids {
			c := testkit.Customer{Name: fmt.Sprintf("c%d", i)}
			if err := tx.Save(ctx, &c); err != nil {
				return err
			}
			ids[i] = c.ID
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	return ids
}

func serverInt(t *testing.T, srv *testkit.Server, query string, args ...any) int {
	t.Helper()
	var n int
	if err := testkit.OpenServerDB(t, srv.Path).QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func pending(t *testing.T, db *localdb.DB) int {
	t.Helper()
	n, err := db.Pending(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Dirty rows go up in table priority order (parents first, whatever the
// order they were written in), in id order within a table, in batches of
// BatchSize rows of one table numbered from 0; rows already pushed do not
// go again; acknowledged rows end clean at the session's version.
func TestPushSendsDirtyRowsInPriorityOrder(t *testing.T) {
	ctx := testCtx(t)
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	wl := &wireLog{}
	db, api := device(t, reg, srv.URL, &testkit.FaultTransport{Base: wl}, "")
	type ack struct {
		table string
		rows  int
	}
	var acks []ack
	eng := push.New(db.Syncer(), api, push.Options{BatchSize: 2, OnBatch: func(table string, rows int) {
		acks = append(acks, ack{table, rows})
	}})

	old := testkit.Customer{Name: "pushed before"}
	if err := db.Save(ctx, &old); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Push(ctx); err != nil {
		t.Fatal(err)
	}
	wl.take()
	acks = nil

	// The orders get the earlier ids and are written first, in the same
	// transaction as their customers (references are checked at commit):
	// only the priority puts the customers first.
	var custIDs, orderIDs []string
	for range 3 {
		orderIDs = append(orderIDs, newV7(t))
	}
	for range 3 {
		custIDs = append(custIDs, newV7(t))
	}
	err := db.Update(ctx, func(tx *localdb.Tx) error {
		for i := range 3 {
			o := testkit.Order{ID: orderIDs[i], CustomerID: custIDs[i], Total: float64(i)}
			if err := tx.Save(ctx, &o); err != nil {
				return err
			}
		}
		for i := range 3 {
			if err := tx.Save(ctx, &testkit.Customer{ID: custIDs[i], Name: fmt.Sprint("c", i)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := eng.Push(ctx)
	if err != nil {
		t.Fatal(err)
	}

	sent := wl.take()
	var seqs, tables []string
	var ids []string
	for _, b := range sent {
		seqs = append(seqs, b.seq)
		tables = append(tables, b.rows[0].Table)
		for _, r := range b.rows {
			if r.Table != b.rows[0].Table {
				t.Errorf("batch %s mixes tables %s and %s", b.seq, b.rows[0].Table, r.Table)
			}
		}
		ids = append(ids, b.ids()...)
	}
	if want := []string{"0", "1", "2", "3"}; !slices.Equal(seqs, want) {
		t.Errorf("batch numbers %v, want %v", seqs, want)
	}
	if want := []string{"customers", "customers", "orders", "orders"}; !slices.Equal(tables, want) {
		t.Errorf("batch tables %v, want %v (priority order)", tables, want)
	}
	want := append(slices.Sorted(slices.Values(custIDs)), slices.Sorted(slices.Values(orderIDs))...)
	if !slices.Equal(ids, want) {
		t.Errorf("rows sent in order\n%v\nwant\n%v", ids, want)
	}
	if slices.Contains(ids, old.ID) {
		t.Error("the row pushed before, clean since, was sent again")
	}
	if wantAcks := []ack{{"customers", 2}, {"customers", 1}, {"orders", 2}, {"orders", 1}}; !slices.Equal(acks, wantAcks) {
		t.Errorf("OnBatch calls %v, want %v", acks, wantAcks)
	}
	if res.Rows["customers"] != 3 || res.Rows["orders"] != 3 || len(res.Rows) != 2 {
		t.Errorf("Result.Rows=%v, want 3 customers and 3 orders", res.Rows)
	}
	if res.Version == 0 {
		t.Error("Result.Version=0 after a commit")
	}

	if n := pending(t, db); n != 0 {
		t.Errorf("Pending=%d after the push, want 0", n)
	}
	for _, id := range custIDs {
		var c testkit.Customer
		if err := db.Get(ctx, &c, id); err != nil {
			t.Fatal(err)
		}
		if c.Dirty || c.Version != res.Version {
			t.Errorf("customer %s: dirty=%v version=%d, want clean at %d", id, c.Dirty, c.Version, res.Version)
		}
	}
	for _, id := range orderIDs {
		var o testkit.Order
		if err := db.Get(ctx, &o, id); err != nil {
			t.Fatal(err)
		}
		if o.Dirty || o.Version != res.Version {
			t.Errorf("order %s: dirty=%v version=%d, want clean at %d", id, o.Dirty, o.Version, res.Version)
		}
	}
	if st, err := db.Syncer().PushState(ctx); err != nil || st.Session != "" {
		t.Errorf("PushState after the push: %+v, %v; want no session", st, err)
	}
	if n := serverInt(t, srv, `SELECT count(*) FROM customers`); n != 4 {
		t.Errorf("server customers=%d, want 4", n)
	}
	if n := serverInt(t, srv, `SELECT count(*) FROM orders`); n != 3 {
		t.Errorf("server orders=%d, want 3", n)
	}

	// Nothing dirty: no session, no request.
	res, err = eng.Push(ctx)
	if err != nil || res.Version != 0 || len(wl.take()) != 0 {
		t.Errorf("push with nothing dirty: version %d, %v; want nothing sent", res.Version, err)
	}
}

// A batch the server refuses with 413 is sent again halved, from the same
// position and with the same batch number, and later batches keep the
// smaller size. A batch of one row refused with 413 is an error.
func TestPushHalvesBatchOn413(t *testing.T) {
	t.Run("server limit", func(t *testing.T) {
		ctx := testCtx(t)
		reg := testkit.Registry(t)
		srv := testkit.NewServer(t, reg, server.Options{MaxBatchRows: 2})
		wl := &wireLog{}
		db, api := device(t, reg, srv.URL, &testkit.FaultTransport{Base: wl}, "")
		ids := saveCustomers(t, db, 8)
		res, err := push.New(db.Syncer(), api, push.Options{BatchSize: 8}).Push(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var sizes []int
		var seqs []string
		var acked []string
		for _, b := range wl.take() {
			sizes = append(sizes, len(b.rows))
			seqs = append(seqs, b.seq)
			if len(b.rows) <= 2 {
				acked = append(acked, b.ids()...)
			}
		}
		if want := []int{8, 4, 2, 2, 2, 2}; !slices.Equal(sizes, want) {
			t.Errorf("batch sizes %v, want %v", sizes, want)
		}
		if want := []string{"0", "0", "0", "1", "2", "3"}; !slices.Equal(seqs, want) {
			t.Errorf("batch numbers %v, want %v", seqs, want)
		}
		if !slices.Equal(acked, ids) {
			t.Errorf("accepted batches hold %v, want each row once in order %v", acked, ids)
		}
		if res.Rows["customers"] != 8 {
			t.Errorf("Result.Rows=%v, want 8 customers", res.Rows)
		}
		if n := serverInt(t, srv, `SELECT count(*) FROM customers`); n != 8 {
			t.Errorf("server customers=%d, want 8", n)
		}
		if n := pending(t, db); n != 0 {
			t.Errorf("Pending=%d, want 0", n)
		}
	})
	t.Run("one row too large", func(t *testing.T) {
		ctx := testCtx(t)
		reg := testkit.Registry(t)
		srv := testkit.NewServer(t, reg, server.Options{})
		var batches int // requests carrying a batch, the last one's commit included
		ft := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
			if strings.Contains(r.URL.Path, "/batches/") {
				batches++
				return testkit.Status413
			}
			return testkit.Pass
		}}
		db, api := device(t, reg, srv.URL, ft, "")
		saveCustomers(t, db, 4)
		_, err := push.New(db.Syncer(), api, push.Options{BatchSize: 4}).Push(ctx)
		if !errors.Is(err, wire.ErrTooLarge) {
			t.Fatalf("Push: %v, want an error wrapping wire.ErrTooLarge", err)
		}
		if n := batches; n != 3 {
			t.Errorf("batch requests=%d, want 3 (4, 2 and 1 rows)", n)
		}
		if n := pending(t, db); n != 4 {
			t.Errorf("Pending=%d, want the 4 rows still dirty", n)
		}
	})
}

// G5 and G3: a push interrupted in the middle (the process then killed)
// resumes, after the database is opened again, with the first batch the
// server did not acknowledge, in the same session: no row is sent again
// once acknowledged, and the session is committed once.
func TestPushResumesAfterInterruption(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault testkit.Fault
	}{
		{"request of batch 2 dropped", testkit.DropRequest},
		{"answer of batch 2 lost", testkit.DropResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			reg := testkit.Registry(t)
			srv := testkit.NewServer(t, reg, server.Options{})
			path := filepath.Join(t.TempDir(), "device.db")
			wl1 := &wireLog{}
			broken := &testkit.FaultTransport{Base: wl1, Decide: func(r *http.Request, kind string, n int) testkit.Fault {
				if kind == "batches" && strings.HasSuffix(r.URL.Path, "/batches/2") {
					return tc.fault
				}
				return testkit.Pass
			}}
			db, api := device(t, reg, srv.URL, broken, path)
			ids := saveCustomers(t, db, 10)
			if _, err := push.New(db.Syncer(), api, push.Options{BatchSize: 2}).Push(ctx); err == nil {
				t.Fatal("Push succeeded through a dropped batch")
			}
			st, err := db.Syncer().PushState(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Session == "" || st.Seq != 2 || st.Pos.After != ids[3] {
				t.Fatalf("PushState after the interruption: %+v, want a session with 2 batches acknowledged, after %s", st, ids[3])
			}
			if n := pending(t, db); n != 10 {
				t.Errorf("Pending=%d before the commit, want 10", n)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			wl2 := &wireLog{}
			healthy := &testkit.FaultTransport{Base: wl2}
			db2, api2 := device(t, reg, srv.URL, healthy, path)
			res, err := push.New(db2.Syncer(), api2, push.Options{BatchSize: 2}).Push(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var seqs, resent []string
			for _, b := range wl2.take() {
				seqs = append(seqs, b.seq)
				resent = append(resent, b.ids()...)
			}
			if want := []string{"2", "3", "4"}; !slices.Equal(seqs, want) {
				t.Errorf("after the restart sent batches %v, want %v", seqs, want)
			}
			if !slices.Equal(resent, ids[4:]) {
				t.Errorf("after the restart sent %v, want the rows not acknowledged %v", resent, ids[4:])
			}
			if res.Rows["customers"] != 6 {
				t.Errorf("Result.Rows=%v, want the 6 rows of the resumed batches", res.Rows)
			}
			if n := healthy.Count("sessions"); n != 0 {
				t.Errorf("the resumed push opened %d sessions, want 0 (same session)", n)
			}
			if n := serverInt(t, srv, `SELECT count(*) FROM customers`); n != 10 {
				t.Errorf("server customers=%d, want 10", n)
			}
			if n := serverInt(t, srv, `SELECT count(*) FROM customers WHERE _session = ?`, st.Session); n != 10 {
				t.Errorf("server customers from session %s: %d, want 10", st.Session, n)
			}
			if n := serverInt(t, srv, `SELECT count(*) FROM _tether_sessions`); n != 1 {
				t.Errorf("server sessions=%d, want 1", n)
			}
			if n := serverInt(t, srv, `SELECT coalesce(sum(version), 0) FROM _tether_tenants`); n != 1 {
				t.Errorf("server version=%d, want 1 (one commit)", n)
			}
			if n := pending(t, db2); n != 0 {
				t.Errorf("Pending=%d, want 0", n)
			}
		})
	}
}

// G2: a row edited while the batch holding it is on the wire (and the
// next batch is being read) stays dirty, based on the new server version,
// and its edit goes up in the next push.
func TestPushEditDuringBatchStaysDirty(t *testing.T) {
	ctx := testCtx(t)
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	wl := &wireLog{}
	var db *localdb.DB
	var ids []string
	edited := false
	ft := &testkit.FaultTransport{Base: wl, Decide: func(r *http.Request, kind string, n int) testkit.Fault {
		if kind == "batches" && n == 1 { // batch 1 holds ids[2] and ids[3]
			var c testkit.Customer
			if err := db.Get(ctx, &c, ids[2]); err != nil {
				t.Error(err)
				return testkit.Pass
			}
			c.Name = "edited in flight"
			if err := db.Save(ctx, &c); err != nil {
				t.Error(err)
				return testkit.Pass
			}
			edited = true
		}
		return testkit.Pass
	}}
	db, api := device(t, reg, srv.URL, ft, "")
	ids = saveCustomers(t, db, 6)
	eng := push.New(db.Syncer(), api, push.Options{BatchSize: 2})
	res, err := eng.Push(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !edited {
		t.Fatal("the edit was not made")
	}
	sent := wl.take()
	if len(sent) != 3 || !slices.Contains(sent[1].ids(), ids[2]) {
		t.Fatalf("batches %v, want 3 with ids[2] in the second", sent)
	}
	for _, r := range sent[1].rows {
		if r.ID == ids[2] && r.Values["name"] == "edited in flight" {
			t.Fatal("the batch on the wire holds the edit: it was made too early to test anything")
		}
	}
	if n := pending(t, db); n != 1 {
		t.Errorf("Pending=%d after the push, want 1 (the row edited in flight)", n)
	}
	var c testkit.Customer
	if err := db.Get(ctx, &c, ids[2]); err != nil {
		t.Fatal(err)
	}
	if !c.Dirty || c.Name != "edited in flight" || c.Version != res.Version {
		t.Errorf("row edited in flight: dirty=%v name=%q version=%d; want dirty, edited, based on %d", c.Dirty, c.Name, c.Version, res.Version)
	}
	onServer := func() int {
		return serverInt(t, srv, `SELECT count(*) FROM customers WHERE id = ? AND name = 'edited in flight'`, ids[2])
	}
	if onServer() != 0 {
		t.Fatal("the server has the edit, made after its batch was read")
	}

	if _, err := eng.Push(ctx); err != nil {
		t.Fatal(err)
	}
	sent = wl.take()
	if len(sent) != 1 || !slices.Equal(sent[0].ids(), []string{ids[2]}) {
		t.Errorf("second push sent %v, want only the edited row", sent)
	}
	if onServer() != 1 {
		t.Error("the edit did not reach the server")
	}
	if n := pending(t, db); n != 0 {
		t.Errorf("Pending=%d after the second push, want 0", n)
	}
}
