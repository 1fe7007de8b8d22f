package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// A digest names each column of a table at most once, id first: a column
// repeated 500 times cost 500 digests' work in one request, and an empty
// list or more columns than the table has answered 500. Each is refused
// with 400 naming the problem, on every store, and good requests still
// get their digests.
func TestDigestColumnsValidated(t *testing.T) {
	reg := testkit.Registry(t)
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		url := testkit.Serve(t, db.Open(t, reg.Schema(), stores.Options{}), server.Options{}).URL
		session := openSession(t, url, "token-ada", device)
		if st, _, body := call(t, "PUT", url+"/v1/sessions/"+session+"/batches/0?commit=1", "token-ada", `{"rows":[`+goodRow+`]}`); st != 200 {
			t.Fatalf("push: %d %s", st, body)
		}
		repeated := func(n int) string { return `"id"` + strings.Repeat(`,"name"`, n) }
		for _, tc := range []struct {
			name, columns string
			status        int
			mention       string
		}{
			{"a column 500 times", `{"customers":[` + repeated(500) + `]}`, 400, "more than 32 elements"},
			{"a column 3 times", `{"customers":[` + repeated(3) + `]}`, 400, `"name" named twice`},
			{"id twice", `{"customers":["id","id"]}`, 400, `"id" named twice`},
			{"no columns", `{"customers":[]}`, 400, "no columns"},
			{"id not first", `{"customers":["name","id"]}`, 400, "want id"},
			{"unknown column", `{"customers":["id","nope"]}`, 400, `unknown column "nope"`},
			{"unknown table", `{"nope":["id"]}`, 400, `unknown table "nope"`},
			{"more columns than the table's", `{"customers":["id","name","email","tags","name"]}`, 400, "twice"},
			{"some columns", `{"customers":["id","name"]}`, 200, ""},
			{"every column", `{"customers":["id","name","email","tags"],"orders":["id"]}`, 200, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				st, code, body := call(t, "POST", url+"/v1/digest", "token-ada", `{"columns":`+tc.columns+`}`)
				if st != tc.status {
					t.Fatalf("status %d, want %d: %s", st, tc.status, body)
				}
				if tc.status != 200 {
					var eb wire.ErrorBody
					json.Unmarshal(body, &eb)
					if code != "bad_request" || !strings.Contains(eb.Error.Message, tc.mention) {
						t.Errorf("answer %s, want bad_request mentioning %s", body, tc.mention)
					}
					return
				}
				var d wire.Digests
				if err := json.Unmarshal(body, &d); err != nil || len(d.Tables) == 0 || d.Tables[0].Rows != 1 {
					t.Errorf("digests %s, want customers with 1 row", body)
				}
			})
		}
	})
}

// blockingStore is a store whose digests and snapshots wait, once entered,
// until release is closed: it holds expensive work under way.
type blockingStore struct {
	server.Store
	entered chan struct{}
	release chan struct{}
}

func (b *blockingStore) Digest(ctx context.Context, p server.Principal, table string, columns []string) (wire.TableDigest, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.Store.Digest(ctx, p, table, columns)
}

func (b *blockingStore) Snapshot(ctx context.Context, p server.Principal, after server.Cursor, limit, maxBytes int, device string) (wire.Snapshot, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.Store.Snapshot(ctx, p, after, limit, maxBytes, device)
}

// Expensive requests share MaxCost units of work, whatever their number:
// while a digest of every column holds its tenant's share of the budget,
// another digest of the tenant, or a snapshot page, gets 429 with
// Retry-After naming the limit, and another tenant's digest is served; a token's
// rate limit (off here) is not what stops them. Once the first is done,
// they are served.
func TestExpensiveRequestsLimitedByCost(t *testing.T) {
	reg := testkit.Registry(t)
	cols := columnCount(reg.Schema())
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		for _, second := range []string{"GET /v1/digest", "POST /v1/digest", "GET /v1/snapshot?limit=100"} {
			t.Run(second, func(t *testing.T) {
				store := &blockingStore{
					Store:   db.Open(t, reg.Schema(), stores.Options{}),
					entered: make(chan struct{}, 16),
					release: make(chan struct{}),
				}
				url := testkit.Serve(t, store, server.Options{MaxCost: int64(cols)}).URL
				var wg sync.WaitGroup
				var first int
				wg.Add(1)
				digest := func(token string, status *int) {
					defer wg.Done()
					req, _ := http.NewRequest("GET", url+"/v1/digest", nil)
					req.Header.Set("Authorization", "Bearer "+token)
					if resp, err := http.DefaultClient.Do(req); err == nil {
						*status = resp.StatusCode
						resp.Body.Close()
					}
				}
				go digest("token-ada", &first) // a digest of every column: the tenant's whole share
				<-store.entered
				// Another tenant's digest is not held back by acme's.
				var other int
				wg.Add(1)
				go digest("token-globe", &other)
				select {
				case <-store.entered:
				case <-time.After(30 * time.Second):
					t.Fatal("another tenant's digest waits for acme's")
				}
				method, path, _ := strings.Cut(second, " ")
				body := ""
				if method == "POST" {
					body = `{"columns":{"customers":["id"]}}`
				}
				req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer token-bob")
				if body != "" {
					req.Header.Set("Content-Type", "application/json")
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var eb wire.ErrorBody
				json.NewDecoder(resp.Body).Decode(&eb)
				resp.Body.Close()
				if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || !strings.Contains(eb.Error.Message, "MaxCost") {
					t.Errorf("second request: %d, Retry-After %q, %q; want 429 with Retry-After naming MaxCost", resp.StatusCode, resp.Header.Get("Retry-After"), eb.Error.Message)
				}
				close(store.release)
				wg.Wait()
				if first != 200 || other != 200 {
					t.Fatalf("first digest: %d, the other tenant's: %d, want 200", first, other)
				}
				st, _, answer := call(t, method, url+path, "token-bob", body, wire.HeaderDevice, "")
				if st != 200 {
					t.Errorf("second request once the first is done: %d %s", st, answer)
				}
			})
		}
	})
}

// holdingStore counts the digests its store computes, and holds those of
// user hold, once entered, until release is closed.
type holdingStore struct {
	server.Store
	hold    string
	entered chan struct{}
	release chan struct{}
	digests atomic.Int64
}

func (h *holdingStore) Digest(ctx context.Context, p server.Principal, table string, columns []string) (wire.TableDigest, error) {
	h.digests.Add(1)
	if p.User == h.hold {
		h.entered <- struct{}{}
		<-h.release
	}
	return h.Store.Digest(ctx, p, table, columns)
}

// A tenant's digest is reused while its version has not moved, when the
// server's expensive work is at MaxCost: instead of waiting for it and
// getting 429, a digest asked again is answered from memory (here the
// tenant's share is spent by another user's digest). Another
// tenant's commit does not move it, the tenant's own commit does, and
// another tenant never gets it; an idle server computes each digest
// afresh. On every store.
func TestDigestReusedWhileVersionStill(t *testing.T) {
	reg := testkit.Registry(t)
	cols := columnCount(reg.Schema())
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		store := &holdingStore{Store: db.Open(t, reg.Schema(), stores.Options{}), hold: "bob", entered: make(chan struct{}, 16)}
		url := testkit.Serve(t, store, server.Options{MaxCost: int64(cols), CostWait: 10 * time.Millisecond}).URL
		const globexDevice = "0190a3b4-0000-7000-8000-0000000000a1"
		push := func(token, dev, id string) {
			t.Helper()
			session := openSession(t, url, token, dev)
			row := strings.NewReplacer(`"c1"`, `"`+id+`"`, device, dev).Replace(goodRow)
			if st, _, body := call(t, "PUT", url+"/v1/sessions/"+session+"/batches/0?commit=1", token, `{"rows":[`+row+`]}`, wire.HeaderDevice, dev); st != 200 {
				t.Fatalf("push: %d %s", st, body)
			}
		}
		// digest asks for a digest of ada's, and returns the status, the
		// digests and how many the store computed.
		digest := func(columns string) (int, wire.Digests, int64) {
			t.Helper()
			before := store.digests.Load()
			st, _, answer := call(t, "POST", url+"/v1/digest", "token-ada", `{"columns":`+columns+`}`)
			var d wire.Digests
			if st == 200 {
				if err := json.Unmarshal(answer, &d); err != nil {
					t.Fatal(err)
				}
			}
			return st, d, store.digests.Load() - before
		}
		// busy holds acme's whole share of the budget with a digest of
		// bob's until the function it returns is called.
		busy := func() func() {
			t.Helper()
			store.release = make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				req, _ := http.NewRequest("GET", url+"/v1/digest", nil)
				req.Header.Set("Authorization", "Bearer token-bob")
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
				}
			}()
			<-store.entered
			return func() {
				close(store.release)
				for range len(reg.Schema().Tables) - 1 {
					<-store.entered
				}
				<-done
			}
		}
		customers, both := `{"customers":["id","name"]}`, `{"customers":["id"],"orders":["id"]}`
		push("token-ada", device, "c1")
		push("token-globe", globexDevice, "g1")
		st, first, n := digest(customers)
		if st != 200 || n != 1 || first.Tables[0].Rows != 1 {
			t.Fatalf("first digest: %d, %d computed, %+v; want 200, 1, of 1 row", st, n, first)
		}
		if st, again, n := digest(customers); st != 200 || n != 1 || !reflect.DeepEqual(again, first) {
			t.Errorf("again on an idle server: %d, %d computed, %+v; want 200, 1 (afresh), %+v", st, n, again, first)
		}

		done := busy()
		if st, again, n := digest(customers); st != 200 || n != 0 || !reflect.DeepEqual(again, first) {
			t.Errorf("again on a busy server: %d, %d computed, %+v; want 200, 0 (reused), %+v", st, n, again, first)
		}
		if st, _, n := digest(both); st != 429 || n != 0 {
			t.Errorf("a digest never computed, on a busy server: %d, %d computed; want 429, 0", st, n)
		}
		done()

		push("token-globe", globexDevice, "g2")
		done = busy()
		if st, _, n := digest(customers); st != 200 || n != 0 {
			t.Errorf("after another tenant's commit, on a busy server: %d, %d computed; want 200, 0 (reused)", st, n)
		}
		done()

		push("token-ada", device, "c2")
		done = busy()
		if st, _, n := digest(customers); st != 429 || n != 0 {
			t.Errorf("after the tenant's commit, on a busy server: %d, %d computed; want 429, 0 (not reusable)", st, n)
		}
		done()
		if st, moved, n := digest(customers); st != 200 || n != 1 || moved.Tables[0].Rows != 2 {
			t.Errorf("after the tenant's commit: %d, %d computed, %+v; want 200, 1, of 2 rows", st, n, moved)
		}

		// globex's digest of the same columns is its own.
		store.hold = ""
		st, _, answer := call(t, "POST", url+"/v1/digest", "token-globe", `{"columns":`+customers+`}`, wire.HeaderDevice, globexDevice)
		var theirs wire.Digests
		json.Unmarshal(answer, &theirs)
		if st != 200 || len(theirs.Tables) != 1 || theirs.Tables[0].Rows != 2 || theirs.Tables[0].SHA256 == first.Tables[0].SHA256 {
			t.Errorf("another tenant's digest: %d %s, want its own 2 rows", st, answer)
		}
	})
}

// columnCount is the number of columns of every table of schema.
func columnCount(schema entity.Schema) int {
	n := 0
	for _, tb := range schema.Tables {
		n += len(tb.Columns)
	}
	return n
}

// When every unit of MaxCost is taken, by other tenants too, a digest
// waits CostWait for its cost, then gets 429 with Retry-After naming the
// limit.
func TestCostBudgetServerWide(t *testing.T) {
	reg := testkit.Registry(t)
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		store := &blockingStore{
			Store:   db.Open(t, reg.Schema(), stores.Options{}),
			entered: make(chan struct{}, 16),
			release: make(chan struct{}),
		}
		// One unit: acme's share, a quarter of it rounded up, is all of it.
		url := testkit.Serve(t, store, server.Options{MaxCost: 1, CostWait: 100 * time.Millisecond}).URL
		done := make(chan int, 1)
		go func() {
			st, _, _ := call(t, "GET", url+"/v1/digest", "token-ada", "", wire.HeaderDevice, "")
			done <- st
		}()
		<-store.entered
		st, code, body := call(t, "GET", url+"/v1/digest", "token-globe", "", wire.HeaderDevice, "")
		if st != 429 || code != "rate_limited" || !strings.Contains(string(body), "MaxCost") || !strings.Contains(string(body), "taken") {
			t.Errorf("a digest while every unit is taken: %d %s, want 429 naming MaxCost", st, body)
		}
		close(store.release)
		if st := <-done; st != 200 {
			t.Errorf("the first digest: %d, want 200", st)
		}
		if st, _, body := call(t, "GET", url+"/v1/digest", "token-globe", "", wire.HeaderDevice, ""); st != 200 {
			t.Errorf("the digest once the budget is free: %d %s", st, body)
		}
	})
}
