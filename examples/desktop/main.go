package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/sqlitestore"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "desktop:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("desktop", flag.ContinueOnError)
	srvURL := fs.String("server", "", "sync server URL; empty starts a demo server and two app instances")
	token := fs.String("token", os.Getenv("TETHER_TOKEN"), "bearer token (default $TETHER_TOKEN)")
	dbPath := fs.String("db", "contacts.db", "the device's SQLite file")
	addr := fs.String("addr", "127.0.0.1:8765", "where the UI listens (keep it on loopback); the demo's second instance takes the next port")
	auto := fs.Duration("auto-sync", time.Minute, "background sync interval, and live sync on others' changes; 0 for the button only")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if *srvURL != "" {
		return serveApp(ctx, Config{Name: filepath.Base(*dbPath), DBPath: *dbPath, Server: *srvURL, Token: *token, AutoSync: *auto, Logger: log}, *addr)
	}

	// The demo: a server on loopback and two devices of users of one tenant.
	dir, err := os.MkdirTemp("", "tether-desktop-")
	if err != nil {
		return fmt.Errorf("demo dir: %w", err)
	}
	defer os.RemoveAll(dir)
	reg, err := Registry()
	if err != nil {
		return err
	}
	url, closeServer, err := demoServer(filepath.Join(dir, "server.db"), reg, log)
	if err != nil {
		return err
	}
	defer closeServer()
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	base, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("-addr: port: %w", err)
	}
	errc := make(chan error, 2)
	for i, d := range []struct{ name, token string }{{"laptop", "token-laptop"}, {"desk", "token-desk"}} {
		cfg := Config{Name: d.name, DBPath: filepath.Join(dir, d.name+".db"), Server: url, Token: d.token, AutoSync: *auto, Logger: log}
		next := base // the second instance listens on the next port (0: any)
		if base != 0 {
			next += i
		}
		go func() { errc <- serveApp(ctx, cfg, net.JoinHostPort(host, strconv.Itoa(next))) }()
	}
	err = <-errc
	if err2 := <-errc; err == nil {
		err = err2
	}
	return err
}

// demoServer serves a tether server over a SQLite file on loopback. The
// store's construction is kept here, in one place.
func demoServer(path string, reg *entity.Registry, log *slog.Logger) (url string, closeFn func(), err error) {
	store, err := sqlitestore.Open(path, reg.Schema(), sqlitestore.Options{})
	if err != nil {
		return "", nil, fmt.Errorf("demo server store: %w", err)
	}
	srv, err := server.New(store, server.Options{Logger: log, Auth: server.StaticTokens{
		"token-laptop": {Tenant: "demo", User: "ada"},
		"token-desk":   {Tenant: "demo", User: "bob"},
	}})
	if err != nil {
		store.Close()
		return "", nil, fmt.Errorf("demo server: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		store.Close()
		return "", nil, fmt.Errorf("demo server: %w", err)
	}
	hs := &http.Server{Handler: srv}
	go hs.Serve(ln)
	return "http://" + ln.Addr().String(), func() { hs.Close(); srv.Close(); store.Close() }, nil
}

// serveApp opens an app and serves its UI on addr until ctx ends.
func serveApp(ctx context.Context, cfg Config, addr string) error {
	app, err := Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer app.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: listen: %w", cfg.Name, err)
	}
	hs := &http.Server{Handler: app.Handler(), ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("%s: open http://%s in a browser\n", cfg.Name, ln.Addr())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	}()
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s: serve: %w", cfg.Name, err)
	}
	return nil
}
