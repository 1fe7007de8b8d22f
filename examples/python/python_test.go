// Package python_test runs the Python reference client (tether_client.py,
// demo.py) against a real tether-server, and checks that a Go device sees
// the rows it wrote.
package python_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/localdb"
)

// Note is the synced table the Python client writes: a column of every
// kind.
type Note struct {
	entity.Meta `sync:"notes,1"`
	ID          string         `db:"id"`
	Title       string         `db:"title"`
	Count       int64          `db:"count"`
	Score       float64        `db:"score"`
	Done        bool           `db:"done"`
	Due         time.Time      `db:"due"`
	Data        []byte         `db:"data"`
	Tags        map[string]any `db:"tags,json"`
	Note        *string        `db:"note"`
}

// The Python client registers, pulls a Go device's row, pushes, edits,
// deletes and abandons a session against tether-server, its digests agree
// with the server's, and a Go device then holds the rows it holds.
func TestPythonClient(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("TETHER_REQUIRE_PYTHON") == "1" {
			t.Fatal("python3 is not installed, and TETHER_REQUIRE_PYTHON=1")
		}
		t.Skip("python3 is not installed (set TETHER_REQUIRE_PYTHON=1 to fail instead)")
	}
	ctx := context.Background()
	dir := t.TempDir()
	reg := entity.NewRegistry()
	if err := reg.Register(Note{}); err != nil {
		t.Fatal(err)
	}
	url := startServer(t, dir, reg.Schema())

	// A Go device writes a row first, for the Python client to pull.
	db, err := localdb.Open(ctx, filepath.Join(dir, "go.db"), reg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	co := coordinator.New(db, client.New(url, client.Options{Token: "token-go"}), coordinator.Options{})
	goRow := Note{Title: "from Go", Count: 1, Data: []byte("go"), Due: time.Unix(1700000000, 5).UTC(), Tags: map[string]any{"go": true}}
	if err := db.Save(ctx, &goRow); err != nil {
		t.Fatal(err)
	}
	if _, err := co.SyncNow(ctx); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(python, "demo.py", "--url", url, "--token", "token-py",
		"--schema", filepath.Join(dir, "schema.json"), "--go-row", goRow.ID)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("demo.py: %v\n%s", err, stderr.String())
	}
	t.Logf("demo.py:\n%s", stderr.String())
	var pyRows map[string]map[string]any
	dec := json.NewDecoder(&stdout)
	dec.UseNumber()
	if err := dec.Decode(&pyRows); err != nil {
		t.Fatalf("demo.py's rows: %v", err)
	}

	if _, err := co.SyncNow(ctx); err != nil {
		t.Fatal(err)
	}
	notes, err := localdb.Query[Note](ctx, db, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) != len(pyRows) || len(notes) != 3 {
		t.Fatalf("the Go device holds %d notes, the Python client %d, want 3 (n1, n3 and the Go row)", len(notes), len(pyRows))
	}
	for _, n := range notes {
		values, ok := pyRows["notes/"+n.ID]
		if !ok {
			t.Errorf("the Go device holds note %s, which the Python client does not", n.ID)
			continue
		}
		want := fromWire(t, n.ID, values)
		n.Meta = entity.Meta{}
		if !reflect.DeepEqual(n, want) {
			t.Errorf("note %s:\nGo device %+v\nPython    %+v", n.ID, n, want)
		}
	}
	if n := pyRows["notes/"+goRow.ID]; n["title"] != "edited in Python" {
		t.Errorf("the Go row's title is %v, want the Python client's edit", n["title"])
	}
}

// fromWire returns the Note of a row's values in their wire form.
func fromWire(t *testing.T, id string, v map[string]any) Note {
	t.Helper()
	n := Note{ID: id, Title: v["title"].(string), Done: v["done"].(bool)}
	var err error
	if n.Count, err = v["count"].(json.Number).Int64(); err != nil {
		t.Fatal(err)
	}
	if n.Score, err = v["score"].(json.Number).Float64(); err != nil {
		t.Fatal(err)
	}
	if n.Due, err = time.Parse(time.RFC3339Nano, v["due"].(string)); err != nil {
		t.Fatal(err)
	}
	if s, ok := v["data"].(string); ok {
		if n.Data, err = base64.StdEncoding.DecodeString(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := json.Unmarshal([]byte(v["tags"].(string)), &n.Tags); err != nil {
		t.Fatal(err)
	}
	if s, ok := v["note"].(string); ok {
		n.Note = &s
	}
	return n
}

// startServer builds tether-server and starts it on loopback with the
// schema and two tokens of tenant acme, and returns its URL; it stops
// when t ends.
func startServer(t *testing.T, dir string, schema entity.Schema) string {
	t.Helper()
	bin := filepath.Join(dir, "tether-server")
	build := exec.Command("go", "build", "-o", bin, "github.com/tethersync/tether/cmd/tether-server")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build tether-server: %v\n%s", err, out)
	}
	data, err := json.Marshal(schema)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "schema.json"), data)
	writeFile(t, filepath.Join(dir, "tokens.json"), []byte(`{"token-py": {"tenant": "acme", "user": "ada"}, "token-go": {"tenant": "acme", "user": "bob"}}`))
	cmd := exec.Command(bin, "-schema", filepath.Join(dir, "schema.json"), "-tokens", filepath.Join(dir, "tokens.json"),
		"-db", filepath.Join(dir, "server.db"), "-listen", "127.0.0.1:0")
	logs, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// It logs "tether-server listening addr=127.0.0.1:port"; the scan
	// ends with the process's stderr.
	lines := bufio.NewScanner(logs)
	for lines.Scan() {
		line := lines.Text()
		if _, rest, ok := strings.Cut(line, "tether-server listening"); ok {
			for _, f := range strings.Fields(rest) {
				if addr, ok := strings.CutPrefix(f, "addr="); ok {
					go func() { // keep reading, so that logging never blocks
						for lines.Scan() {
						}
					}()
					return "http://" + addr
				}
			}
		}
	}
	t.Fatalf("tether-server exited before it listened: %v", lines.Err())
	return ""
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
