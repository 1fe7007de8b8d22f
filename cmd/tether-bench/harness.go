package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/dbserver"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/mysqlstore"
	"github.com/tethersync/tether/server/pgstore"
	"github.com/tethersync/tether/server/sqlitestore"
)

const benchToken = "bench-token"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// benchServer is a tether server on a loopback port.
type benchServer struct {
	URL   string
	store server.Store
	srv   *server.Server // for trusted writes (Server.Write)
	hs    *http.Server
}

// openStore opens a new store of the kind of -store: a new SQLite file at
// path, or a new database on the benchmark's PostgreSQL or MySQL server.
func (b *bench) openStore(path string) (server.Store, error) {
	return b.openStoreOf(path, b.reg.Schema())
}

// openStoreOf is openStore for the tables of schema.
func (b *bench) openStoreOf(path string, schema entity.Schema) (server.Store, error) {
	if b.db == nil {
		return sqlitestore.Open(path, schema, sqlitestore.Options{})
	}
	dsn, err := b.db.NewDatabase()
	if err != nil {
		return nil, err
	}
	if b.db.Kind() == dbserver.Postgres {
		return pgstore.Open(context.Background(), dsn, schema, pgstore.Options{})
	}
	return mysqlstore.Open(context.Background(), dsn, schema, mysqlstore.Options{})
}

// startServer starts a server on loopback over store.
func startServer(store server.Store, err error) (*benchServer, error) {
	return startServerWith(store, err, server.Options{})
}

// startServerWith starts a server on loopback over store, with opts. Auth,
// when nil, takes benchToken, Logger is quiet and the sweep off unless
// opts.SweepInterval sets it.
func startServerWith(store server.Store, err error, opts server.Options) (*benchServer, error) {
	if err != nil {
		return nil, err
	}
	if opts.Auth == nil {
		opts.Auth = server.StaticTokens(map[string]server.Principal{benchToken: {Tenant: "bench", User: "bench"}})
	}
	opts.Logger = quiet
	if opts.SweepInterval == 0 {
		opts.SweepInterval = -1 // a benchmark run is shorter than any session idle time
	}
	handler, err := server.New(store, opts)
	if err != nil {
		store.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("listen on loopback: %w", err)
	}
	hs := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "tether-bench: server:", err)
		}
	}()
	return &benchServer{URL: "http://" + ln.Addr().String(), store: store, srv: handler, hs: hs}, nil
}

func (s *benchServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.hs.Shutdown(ctx)
	return errors.Join(err, s.store.Close())
}

// wireCounter counts the bytes that cross the TCP connections of a
// transport, headers and compression included.
type wireCounter struct{ read, written atomic.Int64 }

type countedConn struct {
	net.Conn
	c *wireCounter
}

func (c countedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.c.read.Add(int64(n))
	return n, err
}

func (c countedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.c.written.Add(int64(n))
	return n, err
}

func countingTransport() (*http.Transport, *wireCounter) {
	wc := &wireCounter{}
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countedConn{Conn: conn, c: wc}, nil
	}
	return tr, wc
}

// delayTransport is a slow link: it adds a fixed round-trip time to every
// request, half of it before the request is sent and half after the
// answer's headers arrive, and counts the requests. A zero half adds
// nothing.
type delayTransport struct {
	next     http.RoundTripper
	half     time.Duration
	requests atomic.Int64
}

// RoundTrip sends req through next, late by half on each way. A request
// whose context ends while it waits fails with the context's error.
func (t *delayTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.requests.Add(1)
	if err := pause(req.Context(), t.half); err != nil {
		if req.Body != nil {
			req.Body.Close() // a RoundTripper closes the body, even on errors
		}
		return nil, fmt.Errorf("delayed link: before sending %s %s: %w", req.Method, req.URL.Path, err)
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if err := pause(req.Context(), t.half); err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("delayed link: after the answer to %s %s: %w", req.Method, req.URL.Path, err)
	}
	return resp, nil
}

// pause waits d, or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// device is a benchmark device: its database, client and coordinator.
type device struct {
	db   *localdb.DB
	api  *client.Client
	co   *coordinator.Coordinator
	wire *wireCounter
	link *delayTransport // counts the device's requests, and delays them by deviceOptions.rtt
}

type deviceOptions struct {
	batch  int
	noGzip bool
	rtt    time.Duration // added to every request's round trip
	token  string        // bearer token; "" for benchToken
	// timeout bounds each request; 0 for the client's default.
	timeout time.Duration
	// maxElapsed bounds one SyncNow with its retries; 0 for 10 s.
	maxElapsed time.Duration
}

func openDevice(ctx context.Context, path, url string, reg *entity.Registry, o deviceOptions) (*device, error) {
	db, err := localdb.Open(ctx, path, reg)
	if err != nil {
		return nil, err
	}
	tr, wc := countingTransport()
	link := &delayTransport{next: tr, half: o.rtt / 2}
	token := cmp.Or(o.token, benchToken)
	api := client.New(url, client.Options{Token: token, Transport: link, DisableGzip: o.noGzip, Timeout: o.timeout})
	co := coordinator.New(db, api, coordinator.Options{
		PushBatchSize: o.batch, PullBatchSize: o.batch, Logger: quiet,
		MaxElapsed: cmp.Or(o.maxElapsed, 10*time.Second),
	})
	return &device{db: db, api: api, co: co, wire: wc, link: link}, nil
}

func (d *device) Close() error {
	return errors.Join(d.co.Close(), d.db.Close())
}

// copyFile copies a closed SQLite database file.
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
