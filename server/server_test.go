package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	_ "github.com/jackc/pgx/v5/stdlib"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/mysqlstore"
	"github.com/tethersync/tether/server/pgstore"
	"github.com/tethersync/tether/server/sqlitestore"
	"github.com/tethersync/tether/wire"
)

const device = "0190a3b4-0000-7000-8000-000000000001"

// deviceKey is the key of a test device: its id, padded.
func deviceKey(dev string) string {
	return "key-" + dev + strings.Repeat("k", max(0, 28-len(dev)))
}

// call sends a raw request and returns the status and decoded error code.
func call(t *testing.T, method, url, token string, body string, headers ...string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set(wire.HeaderDevice, device)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if _, ok := req.Header[wire.HeaderDeviceKey]; !ok {
		req.Header.Set(wire.HeaderDeviceKey, deviceKey(req.Header.Get(wire.HeaderDevice)))
	}
	if req.Header.Get(wire.HeaderDeviceKey) == "" {
		req.Header.Del(wire.HeaderDeviceKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var eb wire.ErrorBody
	json.Unmarshal(data, &eb)
	return resp.StatusCode, eb.Error.Code, data
}

func openSession(t *testing.T, url, token, dev string) string {
	t.Helper()
	if st, _, body := call(t, "POST", url+"/v1/devices", token, `{"device":"`+dev+`"}`, wire.HeaderDevice, dev); st != 200 {
		t.Fatalf("register: %d %s", st, body)
	}
	st, _, body := call(t, "POST", url+"/v1/sessions", token, `{}`, wire.HeaderDevice, dev)
	if st != 200 {
		t.Fatalf("open session: %d %s", st, body)
	}
	var s wire.Session
	json.Unmarshal(body, &s)
	return s.Session
}

// digest returns every row of every table of the server, staging and
// bookkeeping included, to prove a refused request changed nothing.
type digest func(t *testing.T) []string

var digestTables = []string{"customers", "orders", "_tether_stage_customers", "_tether_stage_orders",
	"_tether_sessions", "_tether_batches", "_tether_devices", "_tether_audit", "_tether_schemas"}

func sqliteDigest(store *sqlitestore.Store) digest {
	return dbDigest(store.DB(), `SELECT coalesce(sum(version), 0) FROM _tether_tenants`)
}

func postgresDigest(store *pgstore.Store) digest {
	return dbDigest(store.DB(), `SELECT coalesce(sum(version), 0) FROM _tether_tenants`)
}

// dbDigest reads every row of digestTables, and the version counter with
// the query version.
func dbDigest(db *sql.DB, version string) digest {
	return func(t *testing.T) []string {
		var out []string
		for _, table := range digestTables {
			rows, err := db.Query(`SELECT * FROM "` + table + `" ORDER BY 1, 2`)
			if err != nil {
				t.Fatal(err)
			}
			cols, _ := rows.Columns()
			for rows.Next() {
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				if err := rows.Scan(ptrs...); err != nil {
					t.Fatal(err)
				}
				out = append(out, fmt.Sprint(table, vals))
			}
			rows.Close()
		}
		var last int64
		if err := db.QueryRow(version).Scan(&last); err != nil {
			t.Fatal(err)
		}
		return append(out, fmt.Sprint("version ", last))
	}
}

const goodRow = `{"table":"customers","id":"c1","hlc":"1700000000000.000000.` + device + `","values":{"name":"Ada","email":null,"tags":"[]"}}`

var jwtSecret = []byte("0123456789abcdef0123456789abcdef")

func jwtToken(t *testing.T, exp time.Time) string {
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "ada", "tenant": "acme", "exp": exp.Unix()}).SignedString(jwtSecret)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// G9 against a running server on each store: every bad request gets its
// 4xx naming the problem, the server's data is unchanged, and it keeps
// serving.
func TestBadInputRefused(t *testing.T) {
	reg := testkit.Registry(t)
	opts := server.Options{MaxBodyBytes: 2 << 20, MaxValueBytes: 1 << 20, Auth: server.Authenticators{testkit.Tokens, &server.JWT{Secret: jwtSecret}}}
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		store := db.Open(t, reg.Schema(), stores.Options{})
		var digest digest
		switch db.Kind {
		case stores.SQLite:
			digest = sqliteDigest(store.(*sqlitestore.Store))
		case stores.Postgres:
			digest = postgresDigest(store.(*pgstore.Store))
		case stores.MySQL:
			digest = dbDigest(store.(*mysqlstore.Store).DB(), `SELECT coalesce(sum(version), 0) FROM _tether_tenants`)
		}
		badInput(t, testkit.Serve(t, store, opts).URL, digest)
	})
}

func badInput(t *testing.T, url string, digest digest) {
	session := openSession(t, url, "token-ada", device)
	// One committed row so that the digest has content.
	batchURL := url + "/v1/sessions/" + session + "/batches/"
	if st, _, body := call(t, "PUT", batchURL+"0", "token-ada", `{"rows":[`+goodRow+`]}`); st != 200 {
		t.Fatalf("good batch: %d %s", st, body)
	}
	if st, _, body := call(t, "POST", url+"/v1/sessions/"+session+"/commit", "token-ada", `{}`); st != 200 {
		t.Fatalf("commit: %d %s", st, body)
	}
	open := openSession(t, url, "token-ada", device)
	openURL := url + "/v1/sessions/" + open + "/batches/0"
	globexSession := openSession(t, url, "token-globe", "globex-device")
	const otherDevice = "0190a3b4-0000-7000-8000-000000000002"
	if st, _, body := call(t, "POST", url+"/v1/devices", "token-bob", `{"device":"`+otherDevice+`"}`, wire.HeaderDevice, otherDevice); st != 200 {
		t.Fatalf("register: %d %s", st, body)
	}
	row := func(mod string) string { return `{"rows":[` + strings.Replace(goodRow, `"name":"Ada"`, mod, 1) + `]}` }
	withID := func(id string) string { return strings.Replace(row(`"name":"x"`), `"id":"c1"`, `"id":`+id, 1) }
	many := make([]string, wire.MaxBatchSize+1)
	for i := range many {
		many[i] = fmt.Sprintf(`{"table":"customers","id":"m%d","hlc":"1700000000000.000000.%s","values":{}}`, i, device)
	}
	big := make([]string, 3) // each value under MaxValueBytes, the body over MaxBodyBytes
	for i := range big {
		big[i] = strings.Replace(strings.Replace(goodRow, `"Ada"`, `"`+strings.Repeat("x", 900<<10)+`"`, 1), `"c1"`, fmt.Sprintf(`"b%d"`, i), 1)
	}
	before := digest(t)
	tests := []struct {
		name, method, url, token, body string
		status                         int
		code, mention                  string
		headers                        []string
	}{
		{"missing token", "PUT", openURL, "", row(`"name":"x"`), 401, "unauthorized", "bearer", nil},
		{"wrong token", "PUT", openURL, "nope", row(`"name":"x"`), 401, "unauthorized", "token", nil},
		{"expired token", "PUT", openURL, jwtToken(t, time.Now().Add(-time.Hour)), row(`"name":"x"`), 401, "unauthorized", "expired", nil},
		{"tampered token", "PUT", openURL, jwtToken(t, time.Now().Add(time.Hour)) + "x", row(`"name":"x"`), 401, "unauthorized", "signature", nil},
		{"malformed JSON", "PUT", openURL, "token-ada", `{"rows":[{"table":`, 400, "bad_request", "JSON", nil},
		{"truncated JSON", "PUT", openURL, "token-ada", row(`"name":"x"`)[:40], 400, "bad_request", "JSON", nil},
		{"trailing data", "PUT", openURL, "token-ada", `{"rows":[]} {}`, 400, "bad_request", "after", nil},
		{"trailing brace", "PUT", openURL, "token-ada", row(`"name":"x"`) + `}`, 400, "bad_request", "after", nil},
		{"trailing brackets", "PUT", openURL, "token-ada", row(`"name":"x"`) + `]]]`, 400, "bad_request", "after", nil},
		{"trailing brace on a commit", "POST", url + "/v1/sessions/" + open + "/commit", "token-ada", `{}}`, 400, "bad_request", "after", nil},
		{"not JSON", "PUT", openURL, "token-ada", row(`"name":"x"`), 415, "unsupported_media_type", "application/json", []string{"Content-Type", "text/plain"}},
		{"unknown encoding", "PUT", openURL, "token-ada", row(`"name":"x"`), 415, "unsupported_media_type", "Content-Encoding", []string{"Content-Encoding", "br"}},
		{"array for a value", "PUT", openURL, "token-ada", row(`"name":[` + strings.Repeat("0,", 1000) + `0]`), 400, "bad_request", "not an array", nil},
		{"value over MaxValueBytes", "PUT", openURL, "token-ada", row(`"name":"` + strings.Repeat("x", 1<<20+1) + `"`), 413, "too_large", "MaxValueBytes", nil},
		{"row without values", "PUT", openURL, "token-ada", `{"rows":[{"table":"customers","id":"c9","hlc":"1700000000000.000000.` + device + `"}]}`, 400, "bad_request", "lacks column", nil},
		{"row without a column", "PUT", openURL, "token-ada", `{"rows":[` + strings.Replace(goodRow, `"name":"Ada",`, ``, 1) + `]}`, 400, "bad_request", "lacks column name", nil},
		{"field twice", "PUT", openURL, "token-ada", strings.Replace(row(`"name":"x"`), `"id":"c1"`, `"id":"c1","id":"c2"`, 1), 400, "bad_request", "twice", nil},
		{"signed batch number", "PUT", url + "/v1/sessions/" + open + "/batches/+5", "token-ada", row(`"name":"x"`), 400, "bad_request", "batch number", nil},
		{"unknown field", "PUT", openURL, "token-ada", `{"rows":[], "x":1}`, 400, "bad_request", "x", nil},
		{"empty batch", "PUT", openURL, "token-ada", `{"rows":[]}`, 400, "bad_request", "no rows", nil},
		{"unknown table", "PUT", openURL, "token-ada", strings.Replace(row(`"name":"x"`), `"customers"`, `"users; DROP TABLE customers"`, 1), 400, "bad_request", "unknown table", nil},
		{"unknown column", "PUT", openURL, "token-ada", row(`"nme":"x"`), 400, "bad_request", "unknown column", nil},
		{"SQL in a column name", "PUT", openURL, "token-ada", row(`"name\" = 1; --":"x"`), 400, "bad_request", "unknown column", nil},
		{"wrong type", "PUT", openURL, "token-ada", row(`"name":42`), 400, "bad_request", "column name: want text", nil},
		{"object for text", "PUT", openURL, "token-ada", row(`"name":{"a":1}`), 400, "bad_request", "a value must be a string, number, boolean or null, not an object", nil},
		{"invalid JSON column", "PUT", openURL, "token-ada", strings.Replace(row(`"name":"x"`), `"tags":"[]"`, `"tags":"[1,"`, 1), 400, "bad_request", "JSON", nil},
		{"NUL in text", "PUT", openURL, "token-ada", row(`"name":"a\u0000b"`), 400, "bad_request", "NUL character", nil},
		{"null in non-null column", "PUT", openURL, "token-ada", row(`"name":null`), 400, "bad_request", "non-nullable", nil},
		{"missing id", "PUT", openURL, "token-ada", withID(`""`), 400, "bad_request", "missing id", nil},
		{"malformed id", "PUT", openURL, "token-ada", withID(`"a\u0000b"`), 400, "bad_request", "malformed id", nil},
		{"huge id", "PUT", openURL, "token-ada", withID(`"` + strings.Repeat("i", 10_000) + `"`), 400, "bad_request", "field id: offset 293: a string longer than 256 bytes", nil},
		{"malformed stamp", "PUT", openURL, "token-ada", strings.Replace(row(`"name":"x"`), `1700000000000.000000.`+device, `tomorrow`, 1), 400, "bad_request", "clock stamp", nil},
		{"another device's stamp", "PUT", openURL, "token-ada", strings.Replace(row(`"name":"x"`), `000000.`+device, `000000.someone-else`, 1), 400, "bad_request", "is not of device", nil},
		{"id twice", "PUT", openURL, "token-ada", `{"rows":[` + goodRow + `,` + goodRow + `]}`, 400, "bad_request", "twice", nil},
		{"body over the limit", "PUT", openURL, "token-ada", `{"rows":[` + strings.Join(big, ",") + `]}`, 413, "too_large", "larger than 2097152 bytes (MaxBodyBytes, after decompression)", nil},
		{"too many rows", "PUT", openURL, "token-ada", `{"rows":[` + strings.Join(many, ",") + `]}`, 413, "too_large", "more than 10000 rows", nil},
		{"bad batch number", "PUT", url + "/v1/sessions/" + open + "/batches/-1", "token-ada", row(`"name":"x"`), 400, "bad_request", "batch number", nil},
		{"bad base", "PUT", url + "/v1/sessions/" + open + "/batches/0?attempt=1&base=-1", "token-ada", row(`"name":"x"`), 400, "bad_request", "base", nil},
		{"unknown session", "PUT", url + "/v1/sessions/nope/batches/0", "token-ada", row(`"name":"x"`), 404, "not_found", "unknown session", nil},
		{"session of another tenant", "PUT", url + "/v1/sessions/" + globexSession + "/batches/0", "token-ada", row(`"name":"x"`), 404, "not_found", "unknown session", nil},
		{"commit of another tenant's session", "POST", url + "/v1/sessions/" + globexSession + "/commit", "token-ada", `{}`, 404, "not_found", "unknown session", nil},
		{"session replayed by another device", "PUT", openURL, "token-bob", strings.Replace(row(`"name":"x"`), "."+device, "."+otherDevice, 1), 404, "not_found", "unknown session", []string{wire.HeaderDevice, otherDevice}},
		{"commit replayed by another device", "POST", url + "/v1/sessions/" + open + "/commit", "token-bob", `{}`, 404, "not_found", "unknown session", []string{wire.HeaderDevice, otherDevice}},
		{"batch to a committed session", "PUT", batchURL + "1", "token-ada", row(`"name":"x"`), 409, "conflict", "committed", nil},
		// Devices are keyed by tenant: the answer is that of a device never
		// registered, which tells nothing of the other tenant's.
		{"session on another tenant's device", "POST", url + "/v1/sessions", "token-globe", `{}`, 403, "unknown_device", "not registered for this tenant", nil},
		{"session on an unknown device", "POST", url + "/v1/sessions", "token-globe", `{}`, 403, "unknown_device", "not registered for this tenant", []string{wire.HeaderDevice, "0190a3b4-0000-7000-8000-00000000dead"}},
		// A database bound to acme names it: a globex token is refused
		// whatever the call, before it reads or writes anything (G8).
		{"pull with a token of another tenant than the database's", "GET", url + "/v1/changes", "token-globe", ``, 403, "forbidden", `belongs to tenant \"acme\"`, []string{wire.HeaderTenant, "acme"}},
		{"batch with a token of another tenant than the database's", "PUT", batchURL + "9?open=1&commit=1", "token-globe", row(`"name":"x"`), 403, "forbidden", `belongs to tenant \"acme\"`, []string{wire.HeaderTenant, "acme"}},
		{"events with a token of another tenant than the database's", "GET", url + "/v1/events", "token-globe", ``, 403, "forbidden", `belongs to tenant \"acme\"`, []string{wire.HeaderTenant, "acme"}},
		{"malformed device", "POST", url + "/v1/devices", "token-ada", `{"device":"../../x"}`, 400, "bad_request", "device", nil},
		{"malformed cursor", "GET", url + "/v1/changes?cursor=!!!", "token-ada", ``, 400, "bad_request", "cursor", nil},
		{"bad limit", "GET", url + "/v1/changes?limit=100000", "token-ada", ``, 400, "bad_request", "limit", nil},
		{"unknown endpoint", "GET", url + "/v1/nothing", "token-ada", ``, 404, "not_found", "no endpoint", nil},
		{"events without a token", "GET", url + "/v1/events", "", ``, 401, "unauthorized", "bearer", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, code, body := call(t, tt.method, tt.url, tt.token, tt.body, tt.headers...)
			if st != tt.status || code != tt.code || !strings.Contains(string(body), tt.mention) {
				t.Errorf("%s %s: %d %s, want %d %s mentioning %q", tt.method, tt.name, st, body, tt.status, tt.code, tt.mention)
			}
		})
	}
	if after := digest(t); !reflect.DeepEqual(before, after) {
		t.Errorf("server data changed by refused requests:\nbefore %q\nafter  %q", before, after)
	}
	// The server keeps serving, and SQL in values is just data.
	evil := `'); DROP TABLE customers; --`
	if st, _, body := call(t, "PUT", openURL, "token-ada", strings.Replace(row(`"name":"`+evil+`"`), `"id":"c1"`, `"id":"c2"`, 1)); st != 200 {
		t.Errorf("valid batch after bad ones: %d %s", st, body)
	}
	if st, _, body := call(t, "POST", url+"/v1/sessions/"+open+"/commit", "token-ada", `{}`); st != 200 {
		t.Fatalf("commit: %d %s", st, body)
	}
	st, _, body := call(t, "GET", url+"/v1/changes", "token-ada", ``)
	var ch wire.Changes
	if err := json.Unmarshal(body, &ch); st != 200 || err != nil || len(ch.Changes) != 2 || ch.Changes[1].Values["name"] != evil {
		t.Errorf("pull after the SQL-looking value: %d %s", st, body)
	}
}

// G8: a tenant sees none of another tenant's rows, and ModifiedBy comes
// from the token, not from the payload.
func TestTenantIsolation(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	session := openSession(t, srv.URL, "token-ada", device)
	forged := strings.Replace(goodRow, `"hlc"`, `"modified_by":"mallory","device":"other","version":99,"hlc"`, 1)
	if st, _, body := call(t, "PUT", srv.URL+"/v1/sessions/"+session+"/batches/0", "token-ada", `{"rows":[`+forged+`]}`); st != 200 {
		t.Fatalf("batch: %d %s", st, body)
	}
	if st, _, body := call(t, "POST", srv.URL+"/v1/sessions/"+session+"/commit", "token-ada", `{}`); st != 200 {
		t.Fatalf("commit: %d %s", st, body)
	}
	var by, origin string
	testkit.OpenServerDB(t, srv.Path).QueryRow(`SELECT _modified_by, _origin FROM customers WHERE id = 'c1'`).Scan(&by, &origin)
	if by != "ada" || origin != device {
		t.Errorf("stored modified_by=%q origin=%q, want ada and %s", by, origin, device)
	}

	get := func(token, dev string) wire.Changes {
		st, _, body := call(t, "GET", srv.URL+"/v1/changes", token, "", wire.HeaderDevice, dev)
		if st != 200 {
			t.Fatalf("changes: %d %s", st, body)
		}
		var ch wire.Changes
		json.NewDecoder(bytes.NewReader(body)).Decode(&ch)
		return ch
	}
	// A device pulls in a tenant it is registered in.
	if st, code, _ := call(t, "GET", srv.URL+"/v1/changes", "token-globe", ""); st != 403 || code != "unknown_device" {
		t.Errorf("pull by a device of another tenant: %d %s, want 403 unknown_device", st, code)
	}
	gs := openSession(t, srv.URL, "token-globe", "globex-device")
	if ch := get("token-globe", "globex-device"); len(ch.Changes) != 0 {
		t.Errorf("other tenant pulled %d rows, want 0", len(ch.Changes))
	}
	if ch := get("token-bob", device); len(ch.Changes) != 1 || ch.Changes[0].ModifiedBy != "ada" {
		t.Errorf("same tenant pulled %+v, want c1 modified by ada", ch.Changes)
	}
	// The same id in another tenant is another row.
	for _, step := range []struct{ method, path, body string }{
		{"PUT", "/v1/sessions/" + gs + "/batches/0", `{"rows":[` + strings.NewReplacer("Ada", "Globex Ada", "."+device, ".globex-device").Replace(goodRow) + `]}`},
		{"POST", "/v1/sessions/" + gs + "/commit", `{}`},
	} {
		st, _, body := call(t, step.method, srv.URL+step.path, "token-globe", step.body, wire.HeaderDevice, "globex-device")
		if st != 200 {
			t.Fatalf("%s %s: %d %s", step.method, step.path, st, body)
		}
	}
	var name string
	testkit.OpenServerDB(t, srv.Path).QueryRow(`SELECT name FROM customers WHERE id = 'c1' AND _tenant = 'acme'`).Scan(&name)
	if name != "Ada" {
		t.Errorf("acme's c1 is %q after globex wrote its own c1, want Ada", name)
	}
}

func TestCursorRoundTrip(t *testing.T) {
	for _, c := range []server.Cursor{{}, {Version: 1}, {Version: 1 << 40, Table: 3, ID: "a:b:c"}} {
		got, err := server.ParseCursor(c.String())
		if err != nil || got != c {
			t.Errorf("ParseCursor(%q)=%+v, %v; want %+v", c.String(), got, err, c)
		}
	}
	for _, bad := range []string{"x", "MTo", "Mjox", "MTotMTowOg"} {
		if _, err := server.ParseCursor(bad); err == nil {
			t.Errorf("ParseCursor(%q) succeeded, want error", bad)
		}
	}
}

// A re-sent batch replaces the first one, even when its rows differ, and
// the commit applies every batch of the session, table by table.
func TestResentBatchReplaces(t *testing.T) {
	ctx := t.Context()
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	api := client.New(srv.URL, client.Options{Token: "token-ada"})
	api.SetDeviceKey(device, deviceKey(device))
	if _, err := api.RegisterDevice(ctx, device, "", nil); err != nil {
		t.Fatal(err)
	}
	s, err := api.OpenSession(ctx, device, "")
	if err != nil {
		t.Fatal(err)
	}
	row := func(id, name string) wire.Row {
		return wire.Row{Table: "customers", ID: id, HLC: "0000000000001.000000." + device, Values: map[string]any{"name": name}}
	}
	for _, b := range []struct {
		seq  int
		rows []wire.Row
	}{
		{0, []wire.Row{row("a", "first"), row("b", "first")}},
		{1, []wire.Row{row("c", "kept")}},
		{0, []wire.Row{row("a", "second")}}, // replaces batch 0: b is gone
	} {
		if _, err := api.SendBatch(ctx, device, s, b.seq, b.rows, wire.BatchParams{}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := api.Commit(ctx, device, s)
	if err != nil {
		t.Fatal(err)
	}
	if c.Applied != 2 || len(c.Conflicts) != 0 {
		t.Errorf("Commit=%+v, want 2 rows applied", c)
	}
	got := testkit.Dump(t, srv.Store.DB(), "customers", []string{"name"}, "acme")
	want := []string{"a|second|0", "c|kept|0"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("server rows %q, want %q", got, want)
	}
	var staged int
	if err := srv.Store.DB().QueryRow(`SELECT count(*) FROM "_tether_stage_customers"`).Scan(&staged); err != nil || staged != 0 {
		t.Errorf("%d rows left staged after commit (%v)", staged, err)
	}
}

// Each token has its own request budget; over it, 429 with Retry-After.
func TestRateLimitPerToken(t *testing.T) {
	reg := testkit.Registry(t)
	clock := testkit.NewClock()
	srv := testkit.NewServer(t, reg, server.Options{RateLimit: 0.5, RateBurst: 2, Now: clock.Now})
	devices := srv.URL + "/v1/devices"
	body := `{"device":"` + device + `"}`
	for i := range 2 {
		if st, code, _ := call(t, "POST", devices, "token-ada", body); st != 200 {
			t.Fatalf("request %d within the burst: %d %s", i, st, code)
		}
	}
	req, _ := http.NewRequest("POST", devices, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer token-ada")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || resp.Header.Get("Retry-After") == "0" {
		t.Errorf("third request: %d, Retry-After %q; want 429 with a wait", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if st, code, _ := call(t, "POST", devices, "token-bob", body); st != 200 {
		t.Errorf("another token was limited too: %d %s", st, code)
	}
	clock.Advance(2 * time.Second) // one request's worth at 0.5 a second
	if st, code, _ := call(t, "POST", devices, "token-ada", body); st != 200 {
		t.Errorf("request after the wait: %d %s", st, code)
	}
	if st, code, _ := call(t, "POST", devices, "token-ada", body); st != 429 {
		t.Errorf("second request after the wait: %d %s, want 429", st, code)
	}
	if st, _, _ := call(t, "GET", srv.URL+"/v1/health", "", ""); st != 200 {
		t.Errorf("health is not rate limited: %d", st)
	}
}

// A batch over MaxBatchRows is refused with 413 and nothing is staged.
func TestMaxBatchRows(t *testing.T) {
	ctx := t.Context()
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{MaxBatchRows: 2})
	api := client.New(srv.URL, client.Options{Token: "token-ada"})
	api.SetDeviceKey(device, deviceKey(device))
	if _, err := api.RegisterDevice(ctx, device, "", nil); err != nil {
		t.Fatal(err)
	}
	s, err := api.OpenSession(ctx, device, "")
	if err != nil {
		t.Fatal(err)
	}
	var rows []wire.Row
	for i := range 3 {
		rows = append(rows, wire.Row{Table: "customers", ID: fmt.Sprint("c", i), HLC: "0000000000001.000000." + device, Values: map[string]any{"name": "x"}})
	}
	if _, err := api.SendBatch(ctx, device, s, 0, rows, wire.BatchParams{}); !errors.Is(err, wire.ErrTooLarge) {
		t.Errorf("3-row batch: %v, want ErrTooLarge", err)
	}
	if _, err := api.SendBatch(ctx, device, s, 0, rows[:2], wire.BatchParams{}); err != nil {
		t.Errorf("2-row batch: %v", err)
	}
}

// New refuses options that name a table the store lacks, or an unknown
// strategy or delete policy, with an error naming it.
func TestNewRefusesBadOptions(t *testing.T) {
	reg := testkit.Registry(t)
	store, err := sqlitestore.Open(filepath.Join(t.TempDir(), "s.db"), reg.Schema(), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	resolve := func(context.Context, server.Conflict) (server.Resolution, error) { return server.Resolution{}, nil }
	for want, opts := range map[string]server.Options{
		`strategy for unknown table "nope"`:         {Strategies: map[string]server.Strategy{"nope": server.ServerWins}},
		`unknown strategy "coin-toss"`:              {Strategies: map[string]server.Strategy{"orders": "coin-toss"}},
		`resolver for unknown table "nope"`:         {Resolvers: map[string]server.ResolveFunc{"nope": resolve}},
		`delete policy for unknown table "nope"`:    {Deletes: map[string]server.DeletePolicy{"nope": server.DeleteAlwaysWins}},
		`table "orders": unknown delete policy "x"`: {Deletes: map[string]server.DeletePolicy{"orders": "x"}},
	} {
		if _, err := server.New(store, opts); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New: %v, want an error naming %s", err, want)
		}
	}
	if _, err := server.New(store, server.Options{Strategies: map[string]server.Strategy{"orders": server.MergeColumns}}); err != nil {
		t.Errorf("New with good options: %v", err)
	}
}

// No single request grows the server's memory by more than 64 MiB under the
// default limits, whatever it holds or declares: measured as all the bytes
// the process allocates while the server reads and refuses it (which is
// more than the heap ever grows by). A 31 KB gzip body that decompresses
// to 31 MB (31 million zeros as one value, one value of 31 MiB), to any
// endpoint that takes a body, is also answered in under 1 KiB.
func TestRequestMemoryBounded(t *testing.T) {
	reg := testkit.Registry(t)
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		srv := testkit.Serve(t, db.Open(t, reg.Schema(), stores.Options{}), server.Options{})
		session := openSession(t, srv.URL, "token-ada", device)
		gz := func(write func(w io.Writer)) []byte {
			var buf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
			write(zw)
			zw.Close()
			return buf.Bytes()
		}
		zeros := func(head, tail string) []byte { // 31 million zeros as one value, in about 31 KB
			return gz(func(w io.Writer) {
				io.WriteString(w, head+"[0")
				chunk := []byte(strings.Repeat(",0", 1<<16))
				for range 31_000_000 >> 16 {
					w.Write(chunk)
				}
				io.WriteString(w, "]"+tail)
			})
		}
		long := func(head, tail string) []byte { // one value of 31 MiB
			return gz(func(w io.Writer) {
				io.WriteString(w, head+`"`)
				chunk := []byte(strings.Repeat("x", 1<<20))
				for range 31 {
					w.Write(chunk)
				}
				io.WriteString(w, `"`+tail)
			})
		}
		head := `{"rows":[{"table":"customers","id":"c1","hlc":"1700000000000.000000.` + device + `","values":{"email":null,"tags":"[]","name":`
		past := gz(func(w io.Writer) { // 40 MiB after decompression, in values under the value limit
			io.WriteString(w, `{"rows":[`)
			v := strings.Repeat("y", 4<<20-16)
			for i := range 10 {
				if i > 0 {
					io.WriteString(w, ",")
				}
				fmt.Fprintf(w, `{"table":"customers","id":"r%d","hlc":"1700000000000.000000.%s","values":{"email":null,"tags":"[]","name":"%s"}}`, i, device, v)
			}
			io.WriteString(w, "]}")
		})
		batch := "PUT /v1/sessions/" + session + "/batches/0"
		commit := "POST /v1/sessions/" + session + "/commit"
		for _, tc := range []struct {
			name     string
			endpoint string
			body     []byte
			status   int
		}{
			{"batch of 31 million zeros", batch, zeros(head, "}}]}"), 400},
			{"batch of a value of 31 MiB", batch, long(head, "}}]}"), 413},
			{"batch of 40 MiB decompressed", batch, past, 413},
			{"registration of 31 million zeros", "POST /v1/devices", zeros(`{"device":"`+device+`","schema":{"tables":`, "}}"), 413},
			{"registration of a device id of 31 MiB", "POST /v1/devices", long(`{"device":`, "}"), 413},
			{"registration of a table name of 31 MiB", "POST /v1/devices", long(`{"device":"`+device+`","schema":{"tables":[{"name":`, `,"columns":[]}]}}`), 413},
			{"session of 31 million zeros", "POST /v1/sessions", zeros(`{"session":`, "}"), 413},
			{"session id of 31 MiB", "POST /v1/sessions", long(`{"session":`, "}"), 413},
			{"commit of 31 million zeros", commit, zeros(`{"settle":{"seq":0,"digest":`, "}}"), 413},
			{"commit digest of 31 MiB", commit, long(`{"settle":{"seq":0,"digest":`, "}}"), 413},
			{"digest of 31 million zeros", "POST /v1/digest", zeros(`{"columns":{"customers":`, "}}"), 413},
			{"digest column of 31 MiB", "POST /v1/digest", long(`{"columns":{"customers":["id",`, "]}}"), 413},
		} {
			t.Run(tc.name, func(t *testing.T) {
				method, path, _ := strings.Cut(tc.endpoint, " ")
				req, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(tc.body))
				req.Header.Set("Authorization", "Bearer token-ada")
				req.Header.Set(wire.HeaderDevice, device)
				req.Header.Set(wire.HeaderDeviceKey, deviceKey(device))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Content-Encoding", "gzip")
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				answer, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				runtime.ReadMemStats(&after)
				alloc := after.TotalAlloc - before.TotalAlloc
				t.Logf("%d bytes on the wire: %d, %d MiB allocated, %d bytes answered", len(tc.body), resp.StatusCode, alloc>>20, len(answer))
				if resp.StatusCode != tc.status {
					t.Errorf("status %d, want %d: %.300s", resp.StatusCode, tc.status, answer)
				}
				if alloc > 64<<20 {
					t.Errorf("the request allocated %d MiB, more than 64 MiB", alloc>>20)
				}
				if len(answer) > 1<<10 {
					t.Errorf("answer of %d bytes, more than 1 KiB", len(answer))
				}
			})
		}
	})
}

// Guessing tokens: past AuthFailureBurst failed authentications, an address
// gets 429 with Retry-After before its token is even looked at, a valid
// one included; other addresses are not held back.
func TestFailedAuthenticationThrottled(t *testing.T) {
	reg := testkit.Registry(t)
	clock := testkit.NewClock()
	srv := testkit.NewServer(t, reg, server.Options{AuthFailures: 0.01, AuthFailureBurst: 5, Now: clock.Now})
	get := func(token string, from string) (*http.Response, error) {
		dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		hc := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
		defer hc.CloseIdleConnections()
		req, _ := http.NewRequest("GET", srv.URL+"/v1/changes", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	for i := range 5 {
		resp, err := get(fmt.Sprintf("guess-%d", i), "127.0.0.1")
		if err != nil || resp.StatusCode != 401 {
			t.Fatalf("guess %d: %v %v, want 401", i, resp, err)
		}
	}
	resp, err := get("guess-5", "127.0.0.1")
	if err != nil || resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("guess past the burst: %v %v, want 429 with Retry-After", resp, err)
	}
	if resp, err := get("token-ada", "127.0.0.1"); err != nil || resp.StatusCode != 429 {
		t.Errorf("a valid token from the throttled address: %v %v, want 429", resp, err)
	}
	if resp, err := get("token-ada", "127.0.0.2"); err != nil || resp.StatusCode != 200 {
		t.Errorf("a valid token from another address: %v %v, want 200", resp, err)
	}
	clock.Advance(100 * time.Second) // one failure's worth at 0.01 a second
	if resp, err := get("token-ada", "127.0.0.1"); err != nil || resp.StatusCode != 200 {
		t.Errorf("a valid token from the throttled address after the wait: %v %v, want 200", resp, err)
	}
}

// How far ahead a pushed stamp is (MaxClockSkew) is measured against the
// server's clock, Options.Now.
func TestStampsAheadOfTheServerClock(t *testing.T) {
	reg := testkit.Registry(t)
	clock := testkit.NewClock()
	srv := testkit.NewServer(t, reg, server.Options{MaxClockSkew: time.Minute, Now: clock.Now})
	ahead := clock.Now().Add(10 * time.Minute).UnixMilli()
	stamp := fmt.Sprintf("%013d.000000.%s", ahead, device)
	push := func(id string) (hlc string) {
		t.Helper()
		session := openSession(t, srv.URL, "token-ada", device)
		body := `{"rows":[` + strings.NewReplacer(`"id":"c1"`, `"id":"`+id+`"`, "1700000000000.000000."+device, stamp).Replace(goodRow) + `]}`
		if st, _, resp := call(t, "PUT", srv.URL+"/v1/sessions/"+session+"/batches/0?commit=1", "token-ada", body); st != 200 {
			t.Fatalf("push: %d %s", st, resp)
		}
		if err := srv.Store.DB().QueryRow(`SELECT "_hlc" FROM customers WHERE id = ?`, id).Scan(&hlc); err != nil {
			t.Fatal(err)
		}
		return hlc
	}
	if got, want := push("c1"), fmt.Sprintf("%013d.000000.%s", clock.Now().UnixMilli(), device); got != want {
		t.Errorf("a stamp 10 minutes ahead of the server's clock: stored %q, want it re-stamped %q", got, want)
	}
	clock.Advance(time.Hour)
	if got := push("c2"); got != stamp {
		t.Errorf("the same stamp once the server's clock passed it: stored %q, want it kept", got)
	}
}
