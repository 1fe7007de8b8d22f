package server_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/sqlitestore"
	"github.com/tethersync/tether/wire"
)

// counterItem has a counter column.
type counterItem struct {
	entity.Meta `sync:"items,1"`
	ID          string `db:"id"`
	Name        string `db:"name"`
	Stock       int64  `db:"stock,counter"`
}

// Increments name a counter column of the row's table, carry a UUID each,
// never the same twice, and are bounded in number; the server refuses
// others, and adds each one it takes once however many times it comes.
func TestIncrementsValidated(t *testing.T) {
	reg := entity.NewRegistry()
	if err := reg.Register(counterItem{}); err != nil {
		t.Fatal(err)
	}
	srv := testkit.NewServer(t, reg, server.Options{})
	session := openSession(t, srv.URL, "token-ada", device)
	batchURL := srv.URL + "/v1/sessions/" + session + "/batches/0"
	row := func(incs string) string {
		return `{"rows":[{"table":"items","id":"i1","hlc":"1700000000000.000000.` + device + `","values":{"name":"bolts","stock":0},"increments":` + incs + `}]}`
	}
	inc := func(id, col string, delta int) string {
		return fmt.Sprintf(`{"id":%q,"column":%q,"delta":%d}`, id, col, delta)
	}
	const id1, id2 = "0f8fad5b-d9cb-469f-a165-70867728950e", "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	many := make([]string, wire.MaxIncrementsPerRow+1)
	for i := range many {
		many[i] = inc(fmt.Sprintf("%08x-0000-4000-8000-000000000000", i), "stock", 1)
	}
	for _, tt := range []struct {
		name, body string
		status     int
		mention    string
	}{
		{"not a counter", row(`[` + inc(id1, "name", 1) + `]`), 400, `name\" is not a counter`},
		{"unknown column", row(`[` + inc(id1, "nope", 1) + `]`), 400, `nope\" is not a counter`},
		{"malformed id", row(`[` + inc("not-a-uuid", "stock", 1) + `]`), 400, "malformed id"},
		{"upper-case id", row(`[` + inc(strings.ToUpper(id1), "stock", 1) + `]`), 400, "malformed id"},
		{"id twice", row(`[` + inc(id1, "stock", 1) + `,` + inc(id1, "stock", 2) + `]`), 400, "appears twice"},
		{"fractional delta", row(`[{"id":"` + id1 + `","column":"stock","delta":1.5}]`), 400, "field delta"},
		{"unknown field", row(`[{"id":"` + id1 + `","column":"stock","delta":1,"x":1}]`), 400, "unknown field"},
		{"too many", row(`[` + strings.Join(many, ",") + `]`), 413, "increments"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, _, body := call(t, "PUT", batchURL, "token-ada", tt.body)
			if st != tt.status || !strings.Contains(string(body), tt.mention) {
				t.Errorf("%d %s, want %d mentioning %q", st, body, tt.status, tt.mention)
			}
		})
	}

	// Taken: +5 and -2, the first twice over two sessions; the pushed
	// stock (99) is never written.
	good := row(`[` + inc(id1, "stock", 5) + `,` + inc(id2, "stock", -2) + `]`)
	good = strings.Replace(good, `"stock":0`, `"stock":99`, 1)
	if st, _, body := call(t, "PUT", batchURL+"?commit=1", "token-ada", good); st != 200 {
		t.Fatalf("batch: %d %s", st, body)
	}
	again := openSession(t, srv.URL, "token-ada", device)
	if st, _, body := call(t, "PUT", srv.URL+"/v1/sessions/"+again+"/batches/0?commit=1", "token-ada",
		row(`[`+inc(id1, "stock", 5)+`]`)); st != 200 {
		t.Fatalf("batch again: %d %s", st, body)
	}
	var stock int64
	if err := testkit.OpenServerDB(t, srv.Path).QueryRow(`SELECT stock FROM items WHERE id = 'i1'`).Scan(&stock); err != nil {
		t.Fatal(err)
	}
	if stock != 3 {
		t.Errorf("stock=%d, want 3 (+5 once, -2)", stock)
	}
}

// A counter must be a non-null integer: the server refuses a schema with
// another.
func TestCounterSchemaRefused(t *testing.T) {
	for _, c := range []entity.Column{
		{Name: "level", Kind: entity.KindReal, Counter: true},
		{Name: "level", Kind: entity.KindText, Counter: true},
		{Name: "level", Kind: entity.KindInteger, Nullable: true, Counter: true},
	} {
		schema := entity.Schema{Tables: []entity.Table{{Name: "items", Priority: 1, Columns: []entity.Column{{Name: "id", Kind: entity.KindText}, c}}}}
		b, _ := json.Marshal(schema)
		if _, err := entity.ParseSchema(b); err == nil {
			t.Errorf("ParseSchema took a %s counter (nullable %v)", c.Kind, c.Nullable)
		}
		if s, err := sqlitestore.Open(filepath.Join(t.TempDir(), "s.db"), schema, sqlitestore.Options{}); err == nil {
			s.Close()
			t.Errorf("the store took a %s counter (nullable %v)", c.Kind, c.Nullable)
		}
	}
}

// A device whose schema disagrees with the server's on a counter is
// refused at registration: it would overwrite what others add.
func TestCounterSchemaMismatchRefused(t *testing.T) {
	reg := entity.NewRegistry()
	if err := reg.Register(counterItem{}); err != nil {
		t.Fatal(err)
	}
	srv := testkit.NewServer(t, reg, server.Options{})
	schema := reg.Schema()
	schema.Tables[0].Columns[2].Counter = false
	b, _ := json.Marshal(wire.Device{Device: device, Schema: &schema})
	st, code, body := call(t, "POST", srv.URL+"/v1/devices", "token-ada", string(b))
	if st != 409 || !strings.Contains(string(body), "counter") {
		t.Errorf("register with stock not a counter: %d %s %s, want 409 naming the counter", st, code, body)
	}
}

// A back office adds to a counter with increments, once each however
// often it writes them; a value it writes in the column is not written.
func TestWriteAddsToCounter(t *testing.T) {
	reg := entity.NewRegistry()
	if err := reg.Register(counterItem{}); err != nil {
		t.Fatal(err)
	}
	srv := testkit.NewServer(t, reg, server.Options{})
	h, err := server.New(srv.Store, server.Options{Auth: testkit.Tokens})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	p := server.Principal{Tenant: "acme", User: "office"}
	row := func(stock int, incs ...wire.Increment) []wire.Row {
		return []wire.Row{{Table: "items", ID: "i1", Values: map[string]any{"name": "bolts", "stock": stock}, Increments: incs}}
	}
	const id1, id2 = "0f8fad5b-d9cb-469f-a165-70867728950e", "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	for _, rows := range [][]wire.Row{
		row(500, wire.Increment{ID: id1, Column: "stock", Delta: 10}),
		row(500, wire.Increment{ID: id1, Column: "stock", Delta: 10}, wire.Increment{ID: id2, Column: "stock", Delta: -3}),
	} {
		if _, err := h.Write(t.Context(), p, rows); err != nil {
			t.Fatal(err)
		}
	}
	var stock int64
	if err := testkit.OpenServerDB(t, srv.Path).QueryRow(`SELECT stock FROM items WHERE id = 'i1'`).Scan(&stock); err != nil {
		t.Fatal(err)
	}
	if stock != 7 {
		t.Errorf("stock=%d, want 7 (+10 once, -3; the written 500 not written)", stock)
	}

	// The sweep forgets the ids applied before the horizon (with no
	// device active, the latest version), as it does tombstones.
	if _, err := srv.Store.Sweep(t.Context(), server.Limits{}.WithDefaults(), 100); err != nil {
		t.Fatal(err)
	}
	var left []string
	rows, err := testkit.OpenServerDB(t, srv.Path).Query(`SELECT id FROM _tether_counted ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		rows.Scan(&id)
		left = append(left, id)
	}
	if len(left) != 1 || left[0] != id2 {
		t.Errorf("after the sweep, ids %q remain, want only %s (applied at the horizon)", left, id2)
	}
}
