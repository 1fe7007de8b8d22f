package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tethersync/tether/internal/pgtest"
	"github.com/tethersync/tether/internal/testkit"
)

// files writes a schema file and a tokens file and returns their paths.
func files(t *testing.T, tokens string) (schema, toks string) {
	t.Helper()
	dir := t.TempDir()
	data, err := json.Marshal(testkit.Registry(t).Schema())
	if err != nil {
		t.Fatal(err)
	}
	schema, toks = filepath.Join(dir, "schema.json"), filepath.Join(dir, "tokens.json")
	if err := os.WriteFile(schema, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(toks, []byte(tokens), 0o600); err != nil {
		t.Fatal(err)
	}
	return schema, toks
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestServeSQLite(t *testing.T) { serve(t, filepath.Join(t.TempDir(), "s.db")) }

func TestServePostgres(t *testing.T) { serve(t, pgtest.URL(t)) }

// The binary serves the schema it is given over the store db names,
// authenticates with the tokens file, syncs devices, and stops cleanly when
// its context ends.
func serve(t *testing.T, db string) {
	schema, toks := files(t, `{"token-ada": {"tenant": "acme", "user": "ada"}}`)
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", addr, "-db", db,
			"-schema", schema, "-tokens", toks, "-strategy", "orders=server-wins"})
	}()
	url := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url + "/v1/health")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not answer: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	reg := testkit.Registry(t)
	a := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
	b := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
	c := testkit.Customer{Name: "Ada"}
	if err := a.DB.Save(t.Context(), &c); err != nil {
		t.Fatal(err)
	}
	a.Sync(t)
	if rep := b.Sync(t); rep.Pulled["customers"] != 1 {
		t.Errorf("second device pulled %v, want the customer", rep.Pulled)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after shutdown: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("server did not shut down")
	}
}

func TestBadConfiguration(t *testing.T) {
	schema, toks := files(t, `{"token-ada": {"tenant": "acme", "user": "ada"}}`)
	_, noTenant := files(t, `{"token-ada": {"user": "ada"}}`)
	_, garbled := files(t, `{"token-ada": `)
	db := filepath.Join(t.TempDir(), "s.db")
	for name, args := range map[string][]string{
		"no tokens":          {"-schema", schema, "-db", db},
		"no schema":          {"-tokens", toks, "-db", db},
		"token lacks tenant": {"-schema", schema, "-tokens", noTenant, "-db", db},
		"garbled tokens":     {"-schema", schema, "-tokens", garbled, "-db", db},
		"unknown table":      {"-schema", schema, "-tokens", toks, "-db", db, "-strategy", "nope=server-wins"},
		"unknown strategy":   {"-schema", schema, "-tokens", toks, "-db", db, "-strategy", "orders=coin-toss"},
		"missing file":       {"-schema", filepath.Join(t.TempDir(), "absent.json"), "-tokens", toks, "-db", db},
	} {
		if err := run(t.Context(), args); err == nil {
			t.Errorf("%s: run succeeded, want an error", name)
		}
	}
}
