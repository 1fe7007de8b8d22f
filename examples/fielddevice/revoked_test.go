package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/tethersync/tether/server/sqlitestore"
)

// Item 3 of issue 22: the agent whose device the operator revokes (here
// through the server database, as tether-admin does, while the server
// runs) wipes its database, logs it and exits with status 3; its file
// holds none of its readings.
func TestAgentRevoked(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs two binaries")
	}
	dir := t.TempDir()
	agentBin := build(t, dir, "fielddevice", ".")
	serverBin := build(t, dir, "tether-server", "github.com/tethersync/tether/cmd/tether-server")
	reg, err := Registry()
	if err != nil {
		t.Fatal(err)
	}
	schema, err := json.Marshal(reg.Schema())
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "schema.json"), string(schema))
	write(t, filepath.Join(dir, "tokens.json"), `{"token-field": {"tenant": "acme", "user": "probe-7"}}`)
	serverDB, addr := filepath.Join(dir, "server.db"), freeAddr(t)
	srv := start(t, "server", serverBin, nil, "-listen", addr, "-db", serverDB,
		"-schema", filepath.Join(dir, "schema.json"), "-tokens", filepath.Join(dir, "tokens.json"))
	defer srv.stop(t)
	until(t, "the server to answer", func() bool {
		resp, err := http.Get("http://" + addr + "/v1/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	deviceDB := filepath.Join(dir, "device.db")
	agent := start(t, "agent", agentBin, []string{"TETHER_SERVER=http://" + addr, "TETHER_TOKEN=token-field"},
		"-db", deviceDB, "-name", "probe-revoked", "-interval", "50ms", "-sample", "5ms", "-status", "127.0.0.1:0", "-live")
	agent.waitStatus(t, "a first sync of 20 readings", func(s Status) bool { return !s.LastSuccess.IsZero() && s.Recorded >= 20 })
	var device string
	if err := openRO(t, serverDB).QueryRow(`SELECT device FROM _tether_devices WHERE tenant = 'acme'`).Scan(&device); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(deviceFiles(t, deviceDB), []byte("probe-revoked")) {
		t.Fatal("the device's files hold no reading before the revocation: the test proves nothing")
	}

	admin, err := sqlitestore.Open(serverDB, reg.Schema(), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.SetDeviceRevoked(context.Background(), "acme", device, true); err != nil {
		t.Fatal(err)
	}
	if code := agent.wait(t); code != exitRevoked {
		t.Fatalf("the revoked agent exited with %d, want %d", code, exitRevoked)
	}
	agent.waitLog(t, "device revoked by the server: database wiped, exiting")
	agent.checkJSONLogs(t)
	after := deviceFiles(t, deviceDB)
	for _, m := range []string{"probe-revoked", device} {
		if i := bytes.Index(after, []byte(m)); i >= 0 {
			t.Errorf("the wiped device's files hold %q at byte %d", m, i)
		}
	}
}

// deviceFiles returns the bytes of the SQLite file at path and its -wal.
func deviceFiles(t *testing.T, path string) []byte {
	t.Helper()
	var all []byte
	for _, p := range []string{path, path + "-wal"} {
		b, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}
