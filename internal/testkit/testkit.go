package testkit

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlident"
	"github.com/tethersync/tether/internal/sqlitedriver"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/sqlitestore"
)

// Customer is a parent entity.
type Customer struct {
	entity.Meta `sync:"customers,1"`
	ID          string   `db:"id"`
	Name        string   `db:"name"`
	Email       *string  `db:"email"`
	Tags        []string `db:"tags,json"`
}

// Order is a child entity of Customer.
type Order struct {
	entity.Meta `sync:"orders,2"`
	ID          string    `db:"id"`
	CustomerID  string    `db:"customer_id,ref=customers"`
	Total       float64   `db:"total"`
	PlacedAt    time.Time `db:"placed_at"`
}

// Registry returns a registry of Customer and Order.
func Registry(t testing.TB) *entity.Registry {
	t.Helper()
	reg := entity.NewRegistry()
	if err := reg.Register(Customer{}, Order{}); err != nil {
		t.Fatal(err)
	}
	return reg
}

// Tokens of the test server: two users of tenant acme, one of tenant globex.
var Tokens = server.StaticTokens{
	"token-ada":   {Tenant: "acme", User: "ada"},
	"token-bob":   {Tenant: "acme", User: "bob"},
	"token-globe": {Tenant: "globex", User: "gus"},
}

// Server is a running test server.
type Server struct {
	*httptest.Server
	Store *sqlitestore.Store
	Path  string
}

// NewServer starts a server on loopback over a SQLite file in t.TempDir().
func NewServer(t testing.TB, reg *entity.Registry, opts server.Options) *Server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "server.db")
	store, err := sqlitestore.Open(path, reg.Schema(), sqlitestore.Options{Now: opts.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &Server{Server: Serve(t, store, opts), Store: store, Path: path}
}

// Serve starts a server on loopback over store, with the test tokens and
// a silent logger unless opts has its own. The store stays open.
func Serve(t testing.TB, store server.Store, opts server.Options) *httptest.Server {
	t.Helper()
	if opts.Auth == nil {
		opts.Auth = Tokens
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	handler, err := server.New(store, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { handler.Close() })
	hs := httptest.NewServer(handler)
	t.Cleanup(hs.Close)
	return hs
}

// Device is a test device: its database and coordinator.
type Device struct {
	DB   *localdb.DB
	Co   *coordinator.Coordinator
	API  *client.Client
	Path string
}

// DeviceOptions configures NewDevice.
type DeviceOptions struct {
	Token     string // default "token-ada"
	Transport http.RoundTripper
	Path      string // default a new file in t.TempDir()
	Now       func() time.Time
	Co        coordinator.Options
}

// NewDevice opens a device database and a coordinator syncing it with url.
func NewDevice(t testing.TB, reg *entity.Registry, url string, o DeviceOptions) *Device {
	t.Helper()
	if o.Token == "" {
		o.Token = "token-ada"
	}
	if o.Path == "" {
		o.Path = filepath.Join(t.TempDir(), "device.db")
	}
	db, err := localdb.OpenWith(context.Background(), o.Path, reg, localdb.Options{Now: o.Now})
	if err != nil {
		t.Fatal(err)
	}
	api := client.New(url, client.Options{Token: o.Token, Transport: o.Transport, Timeout: 10 * time.Second})
	if o.Co.InitialBackoff == 0 {
		o.Co.InitialBackoff = 5 * time.Millisecond
	}
	if o.Co.MaxBackoff == 0 {
		o.Co.MaxBackoff = 50 * time.Millisecond
	}
	if o.Co.MaxElapsed == 0 {
		o.Co.MaxElapsed = 20 * time.Second
	}
	if o.Co.Logger == nil {
		o.Co.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	co := coordinator.New(db, api, o.Co)
	t.Cleanup(func() {
		co.Close()
		db.Close()
	})
	return &Device{DB: db, Co: co, API: api, Path: o.Path}
}

// Sync runs SyncNow and fails the test on error.
func (d *Device) Sync(t testing.TB) coordinator.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := d.Co.SyncNow(ctx)
	if err != nil {
		t.Fatalf("SyncNow: %v", err)
	}
	return rep
}

// Dump returns the rows of table, tombstones included, one line per row in
// id order, with the given columns and the deleted flag: a digest of the
// table's contents that can be compared across devices and the server.
// tenantCol, when set, restricts to rows whose _tenant matches (server).
func Dump(t testing.TB, db *sql.DB, table string, cols []string, tenant string) []string {
	t.Helper()
	q := fmt.Sprintf(`SELECT "id", %s, "_deleted" FROM %q`, strings.Join(quoteAll(cols), ", "), table)
	var args []any
	if tenant != "" {
		q += ` WHERE "_tenant" = ?`
		args = append(args, tenant)
	}
	rows, err := db.Query(q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols)+2)
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				v = string(b)
			}
			parts[i] = fmt.Sprint(v)
		}
		out = append(out, strings.Join(parts, "|"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func quoteAll(cols []string) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = sqlident.Quote(c)
	}
	return out
}

// OpenServerDB opens the server's SQLite file for reading.
func OpenServerDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sqlitedriver.Open(path, sqlitedriver.Config{ReadOnly: true, BusyTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// CustomerCols and OrderCols are the value columns compared by Dump.
var (
	CustomerCols = []string{"name", "email", "tags"}
	OrderCols    = []string{"customer_id", "total", "placed_at"}
)
