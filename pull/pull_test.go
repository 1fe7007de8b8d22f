package pull_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/pull"
	"github.com/tethersync/tether/push"
	"github.com/tethersync/tether/server"
)

// These tests run the pull engine against real device databases (SQLite
// files from localdb) and a real server on loopback, filled by a second
// device through the push engine; faults are injected only in the HTTP
// transport.

// testCtx bounds a test, so that a pull that loops fails instead of
// hanging.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// device opens the device database at path (a new file when ""), and a
// client of the server at url over rt (nil: the default), registered and
// bound to the tenant of the token.
func device(t *testing.T, reg *entity.Registry, url, token string, rt http.RoundTripper, path string) (*localdb.DB, *client.Client) {
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
	api := client.New(url, client.Options{Token: token, Transport: rt, Timeout: 10 * time.Second})
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

// writer is the device that fills the server.
type writer struct {
	db  *localdb.DB
	eng *push.Engine
}

func newWriter(t *testing.T, reg *entity.Registry, url string) *writer {
	db, api := device(t, reg, url, "token-bob", nil, "")
	return &writer{db: db, eng: push.New(db.Syncer(), api, push.Options{})}
}

// push pushes the writer's edits in one session.
func (w *writer) push(t *testing.T) {
	t.Helper()
	if _, err := w.eng.Push(testCtx(t)); err != nil {
		t.Fatal(err)
	}
}

// customers saves n new customers named prefix0... in one transaction and
// returns their ids in id order: the order of one session's rows in the
// server's change feed.
func (w *writer) customers(t *testing.T, n int, prefix string) []string {
	t.Helper()
	ctx := testCtx(t)
	ids := make([]string, n)
	err := w.db.Update(ctx, func(tx *localdb.Tx) error {
		for i := range ids {
			c := testkit.Customer{Name: fmt.Sprint(prefix, i)}
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

// rename saves customer id of db with a new name.
func rename(t *testing.T, db *localdb.DB, id, name string) {
	t.Helper()
	ctx := testCtx(t)
	var c testkit.Customer
	if err := db.Get(ctx, &c, id); err != nil {
		t.Fatal(err)
	}
	c.Name = name
	if err := db.Save(ctx, &c); err != nil {
		t.Fatal(err)
	}
}

// cursors is a FaultTransport that records the cursor of every changes
// request, and applies fault (when set) to the changes requests numbered
// in faultAt.
type cursors struct {
	testkit.FaultTransport
	mu   sync.Mutex
	sent []string
}

func newCursors(fault testkit.Fault, faultAt ...int) *cursors {
	c := &cursors{}
	c.Decide = func(r *http.Request, kind string, n int) testkit.Fault {
		if kind != "changes" {
			return testkit.Pass
		}
		c.mu.Lock()
		c.sent = append(c.sent, r.URL.Query().Get("cursor"))
		c.mu.Unlock()
		if slices.Contains(faultAt, n) {
			return fault
		}
		return testkit.Pass
	}
	return c
}

func (c *cursors) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.sent
	c.sent = nil
	return out
}

// ids returns the ids of the live rows of customers db holds.
func ids(t *testing.T, db *localdb.DB) []string {
	t.Helper()
	list, err := localdb.Query[testkit.Customer](testCtx(t), db, "")
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(list))
	for i, c := range list {
		out[i] = c.ID
	}
	return out
}

func cursor(t *testing.T, db *localdb.DB) string {
	t.Helper()
	c, err := db.Syncer().Cursor(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Pull fetches the changes in pages of PageSize rows from the stored
// cursor, applies them (latest state of each row, tombstones included)
// clean, and stores the cursor after them; the next pull starts there.
func TestPullAppliesPages(t *testing.T) {
	ctx := testCtx(t)
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	w := newWriter(t, reg, srv.URL)
	cust := w.customers(t, 5, "c")
	w.push(t)
	// Session 2: two orders, an edit and a delete.
	for i := range 2 {
		if err := w.db.Save(ctx, &testkit.Order{CustomerID: cust[i], Total: float64(i), PlacedAt: time.Unix(int64(i), 0)}); err != nil {
			t.Fatal(err)
		}
	}
	rename(t, w.db, cust[0], "c0 edited")
	if err := w.db.Delete(ctx, &testkit.Customer{ID: cust[4]}); err != nil {
		t.Fatal(err)
	}
	w.push(t)

	tr := newCursors(testkit.Pass)
	db, api := device(t, reg, srv.URL, "token-ada", tr, "")
	var pages []int
	eng := pull.New(db.Syncer(), api, pull.Options{PageSize: 3, OnPage: func(rows map[string]int) {
		n := 0
		for _, c := range rows {
			n += c
		}
		pages = append(pages, n)
	}})
	res, err := eng.Pull(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// 5 customers (one edited, one deleted: their latest state only) and
	// 2 orders.
	if res.Rows["customers"] != 5 || res.Rows["orders"] != 2 || len(res.Rows) != 2 {
		t.Errorf("Result.Rows=%v, want 5 customers and 2 orders", res.Rows)
	}
	if res.Applied != 6 { // a tombstone of a row the device never held is not stored
		t.Errorf("Result.Applied=%d, want 6", res.Applied)
	}
	if want := []int{3, 3, 1}; !slices.Equal(pages, want) {
		t.Errorf("pages of %v rows, want %v", pages, want)
	}
	sent := tr.take()
	if len(sent) != 3 || sent[0] != "" || sent[1] == "" || sent[2] == sent[1] {
		t.Errorf("changes requests with cursors %q, want 3, from \"\", each after the page before", sent)
	}
	for _, table := range []struct {
		name string
		cols []string
	}{{"customers", testkit.CustomerCols}, {"orders", testkit.OrderCols}} {
		live := func(rows []string) []string {
			return slices.DeleteFunc(rows, func(r string) bool { return strings.HasSuffix(r, "|1") })
		}
		got := testkit.Dump(t, db.SQL(), table.name, table.cols, "")
		want := live(testkit.Dump(t, w.db.SQL(), table.name, table.cols, ""))
		if !slices.Equal(got, want) {
			t.Errorf("%s after the pull:\n%v\nwant the writer's\n%v", table.name, got, want)
		}
	}
	var c testkit.Customer
	if err := db.Get(ctx, &c, cust[4]); !errors.Is(err, localdb.ErrNotFound) {
		t.Errorf("deleted customer: %v, want ErrNotFound (a tombstone)", err)
	}
	if err := db.Get(ctx, &c, cust[0]); err != nil || c.Name != "c0 edited" || c.Dirty || c.Version != 2 {
		t.Errorf("edited customer: %+v, %v; want the edit, clean, at version 2", c, err)
	}
	if n, err := db.Pending(ctx); n != 0 || err != nil {
		t.Errorf("Pending=%d, %v after a pull, want 0: pulled rows are not local changes", n, err)
	}
	stored := cursor(t, db)
	if stored == "" {
		t.Fatal("no cursor stored")
	}

	// Nothing new: one request, from the stored cursor.
	res, err = eng.Pull(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sent := tr.take(); !slices.Equal(sent, []string{stored}) || res.Applied != 0 || len(res.Rows) != 0 {
		t.Errorf("second pull: cursors %q, %d applied, rows %v; want one request from %q, nothing applied", sent, res.Applied, res.Rows, stored)
	}
	// A new change: only it comes down.
	rename(t, w.db, cust[1], "c1 edited")
	w.push(t)
	res, err = eng.Pull(ctx)
	if err != nil || res.Applied != 1 || res.Rows["customers"] != 1 {
		t.Errorf("pull after one edit: %d applied, rows %v, %v; want the one edit", res.Applied, res.Rows, err)
	}
	if sent := tr.take(); len(sent) != 1 || sent[0] != stored {
		t.Errorf("pull after one edit sent cursors %q, want one request from %q", sent, stored)
	}
}

// G5: a pull interrupted after some pages (here the answer to the second
// page is lost), with the process then restarted, keeps the pages applied
// with their cursor, and resumes from that cursor instead of from zero.
func TestPullResumesFromCursor(t *testing.T) {
	ctx := testCtx(t)
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	w := newWriter(t, reg, srv.URL)
	var all []string
	for _, prefix := range []string{"a", "b", "c"} { // three sessions: a page each
		all = append(all, w.customers(t, 3, prefix)...)
		w.push(t)
	}

	path := filepath.Join(t.TempDir(), "device.db")
	broken := newCursors(testkit.DropResponse, 1)
	db, api := device(t, reg, srv.URL, "token-ada", broken, path)
	if _, err := pull.New(db.Syncer(), api, pull.Options{PageSize: 3}).Pull(ctx); err == nil {
		t.Fatal("Pull succeeded through a lost page")
	}
	sent := broken.take()
	if len(sent) != 2 {
		t.Fatalf("changes requests %q, want 2 (the second lost)", sent)
	}
	if got := ids(t, db); !slices.Equal(got, all[:3]) {
		t.Errorf("after the interruption the device holds %v, want the first page %v", got, all[:3])
	}
	stored := cursor(t, db)
	if stored != sent[1] {
		t.Errorf("stored cursor %q, want %q, the cursor after the applied page", stored, sent[1])
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	healthy := newCursors(testkit.Pass)
	db2, api2 := device(t, reg, srv.URL, "token-ada", healthy, path)
	res, err := pull.New(db2.Syncer(), api2, pull.Options{PageSize: 3}).Pull(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sent := healthy.take(); len(sent) != 2 || sent[0] != stored {
		t.Errorf("after the restart cursors %q, want 2 requests from %q", sent, stored)
	}
	if res.Rows["customers"] != 6 || res.Applied != 6 {
		t.Errorf("after the restart received %v, applied %d; want the 6 rows not yet applied", res.Rows, res.Applied)
	}
	if got := ids(t, db2); !slices.Equal(got, all) {
		t.Errorf("device holds %v, want %v", got, all)
	}
}

// G5: a page is applied in one transaction with the cursor after it: when
// one of its rows cannot be written (here the app's own trigger refuses
// it), none of the page's rows is stored and the cursor does not move; the
// next pull fetches that page again.
func TestPullStoresCursorWithRows(t *testing.T) {
	ctx := testCtx(t)
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	w := newWriter(t, reg, srv.URL)
	all := w.customers(t, 3, "a")
	w.push(t)
	all = append(all, w.customers(t, 3, "b")...)
	rename(t, w.db, all[4], "poison") // in the second session, the second page of 3
	w.push(t)

	tr := newCursors(testkit.Pass)
	db, api := device(t, reg, srv.URL, "token-ada", tr, "")
	if _, err := db.SQL().ExecContext(ctx, `CREATE TRIGGER refuse_poison BEFORE INSERT ON customers
		WHEN NEW.name = 'poison' BEGIN SELECT RAISE(ABORT, 'poison refused'); END`); err != nil {
		t.Fatal(err)
	}
	eng := pull.New(db.Syncer(), api, pull.Options{PageSize: 3})
	if _, err := eng.Pull(ctx); err == nil {
		t.Fatal("Pull succeeded through a refused row")
	}
	sent := tr.take()
	if len(sent) < 2 {
		t.Fatalf("changes requests %q, want at least 2", sent)
	}
	if got := ids(t, db); !slices.Equal(got, all[:3]) {
		t.Errorf("after the refused page the device holds %v, want only the first page %v", got, all[:3])
	}
	stored := cursor(t, db)
	if stored != sent[1] {
		t.Errorf("stored cursor %q, want %q, the cursor after the first page", stored, sent[1])
	}

	if _, err := db.SQL().ExecContext(ctx, `DROP TRIGGER refuse_poison`); err != nil {
		t.Fatal(err)
	}
	res, err := eng.Pull(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sent := tr.take(); len(sent) == 0 || sent[0] != stored {
		t.Errorf("next pull sent cursors %q, want it to start from %q", sent, stored)
	}
	if res.Applied != 3 {
		t.Errorf("next pull applied %d rows, want the 3 of the refused page", res.Applied)
	}
	if got := ids(t, db); !slices.Equal(got, all) {
		t.Errorf("device holds %v, want %v", got, all)
	}
}

// A pulled row never overwrites a row with a local edit not yet pushed:
// the edit stays, dirty, to go up in the next push, where the server
// resolves the conflict. Other rows of the same page are applied.
func TestPullKeepsLocalDirtyRow(t *testing.T) {
	ctx := testCtx(t)
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	w := newWriter(t, reg, srv.URL)
	both := w.customers(t, 2, "c")
	w.push(t)

	db, api := device(t, reg, srv.URL, "token-ada", nil, "")
	eng := pull.New(db.Syncer(), api, pull.Options{})
	if _, err := eng.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	rename(t, w.db, both[0], "writer's edit")
	rename(t, w.db, both[1], "writer's other edit")
	w.push(t)
	rename(t, db, both[0], "local edit")

	res, err := eng.Pull(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows["customers"] != 2 || res.Applied != 1 {
		t.Errorf("received %v, applied %d; want 2 received and 1 applied", res.Rows, res.Applied)
	}
	var c testkit.Customer
	if err := db.Get(ctx, &c, both[0]); err != nil {
		t.Fatal(err)
	}
	if c.Name != "local edit" || !c.Dirty {
		t.Errorf("locally edited row after the pull: name %q dirty %v; want the local edit, dirty", c.Name, c.Dirty)
	}
	if err := db.Get(ctx, &c, both[1]); err != nil {
		t.Fatal(err)
	}
	if c.Name != "writer's other edit" || c.Dirty || c.Version != 2 {
		t.Errorf("other row after the pull: %q dirty=%v version=%d; want the writer's edit, clean, at version 2", c.Name, c.Dirty, c.Version)
	}
	if n, err := db.Pending(ctx); n != 1 || err != nil {
		t.Errorf("Pending=%d, %v; want 1, the local edit", n, err)
	}
}

// holdRows is a RoundTripper that holds the rows of the first pull page
// until the second page is asked for (at most 10 s): a pull that asks for
// the next page only once it has read a page's rows is late.
type holdRows struct {
	mu    sync.Mutex
	n     int
	asked chan struct{}
	late  atomic.Bool
}

func (h *holdRows) RoundTrip(r *http.Request) (*http.Response, error) {
	if testkit.Kind(r) != "changes" {
		return http.DefaultTransport.RoundTrip(r)
	}
	h.mu.Lock()
	h.n++
	n := h.n
	h.mu.Unlock()
	if n == 2 {
		close(h.asked)
	}
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || n != 1 {
		return resp, err
	}
	var body io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		if body, err = gzip.NewReader(resp.Body); err != nil {
			return nil, err
		}
	}
	plain, err := io.ReadAll(body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	cut := bytes.Index(plain, []byte(`"changes":[`)) + len(`"changes":[`)
	if cut < len(`"changes":[`) {
		return nil, fmt.Errorf("no rows in the page: %s", plain)
	}
	pr, pw := io.Pipe()
	go func() {
		pw.Write(plain[:cut])
		select {
		case <-h.asked:
		case <-time.After(10 * time.Second):
			h.late.Store(true)
		}
		pw.Write(plain[cut:])
		pw.Close()
	}()
	resp.Header.Del("Content-Encoding")
	resp.Header.Del("Content-Length")
	resp.ContentLength = -1
	resp.Body = pr
	return resp, nil
}

// Against a real server, the second page is asked for before the first
// page's rows have come: its head (cursor, more) told where it ends.
func TestPullAsksForTheNextPageBeforeTheRows(t *testing.T) {
	ctx := testCtx(t)
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	w := newWriter(t, reg, srv.URL)
	var want []string
	for i := range 4 { // 4 sessions of 5
		want = append(want, w.customers(t, 5, fmt.Sprint("s", i, "-"))...)
		w.push(t)
	}
	slices.Sort(want)
	tr := &holdRows{asked: make(chan struct{})}
	db, api := device(t, reg, srv.URL, "token-ada", tr, "")
	res, err := pull.New(db.Syncer(), api, pull.Options{PageSize: 5}).Pull(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tr.late.Load() {
		t.Error("the second page was asked for only after the first page's rows came")
	}
	if got := ids(t, db); !slices.Equal(got, want) || res.Rows["customers"] != 20 {
		t.Errorf("pulled %d rows (%v), want the 20 pushed", len(got), res.Rows)
	}
	if tr.n != 4 { // a page a session, each asked for once
		t.Errorf("%d changes requests, want 4", tr.n)
	}
}
