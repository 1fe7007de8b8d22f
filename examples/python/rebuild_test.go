package python_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
)

// A pull that meets 410 after pages of a version it set aside (partial)
// rebuilds, and the snapshot's rows stand: the pages set aside before are
// dropped, not applied over the snapshot with the page that follows.
func TestPythonRebuildDropsPartialPages(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("TETHER_REQUIRE_PYTHON") == "1" {
			t.Fatal("python3 is not installed, and TETHER_REQUIRE_PYTHON=1")
		}
		t.Skip("python3 is not installed (set TETHER_REQUIRE_PYTHON=1 to fail instead)")
	}
	row := func(id string, version int, title string) map[string]any {
		return map[string]any{"table": "notes", "id": id, "version": version, "hlc": "1700000000000.000000.other",
			"values": map[string]any{"title": title}}
	}
	answers := map[string]any{ // by path and cursor
		"/v1/changes ":   map[string]any{"changes": []any{row("n1", 5, "old")}, "cursor": "c1", "more": true, "partial": true},
		"/v1/snapshot ":  map[string]any{"rows": []any{row("n1", 9, "new")}, "cursor": "s1", "more": false, "resume": "r1"},
		"/v1/changes r1": map[string]any{"changes": []any{row("n2", 10, "other")}, "cursor": "r2", "more": false},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Path + " " + r.URL.Query().Get("cursor")
		w.Header().Set("Content-Type", "application/json")
		a, ok := answers[key]
		if !ok { // the cursor inside the version: purged meanwhile
			w.WriteHeader(http.StatusGone)
			a = map[string]any{"error": map[string]any{"code": "history_purged", "message": "history purged"}}
		}
		_ = json.NewEncoder(w).Encode(a)
	}))
	defer srv.Close()

	script := `import json, sys
from tether_client import Device
d = Device(sys.argv[1], "token", device="py-1")
d.pull()
print(json.dumps({k[1]: v["title"] for k, v in d.live().items()}))
`
	cmd := exec.Command(python, "-c", script, srv.URL)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	var got map[string]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("python printed %q: %v", out, err)
	}
	if got["n1"] != "new" || got["n2"] != "other" || len(got) != 2 {
		t.Errorf("rows after the rebuild %v, want n1 as the snapshot has it (new) and n2", got)
	}
}

// A push the server refuses (4xx: nothing of the batch applied) abandons
// its session: otherwise each refused push leaves one open, and after
// MaxOpenSessions of them the device can push nothing for a day.
func TestPythonRefusedPushAbandons(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("TETHER_REQUIRE_PYTHON") == "1" {
			t.Fatal("python3 is not installed, and TETHER_REQUIRE_PYTHON=1")
		}
		t.Skip("python3 is not installed (set TETHER_REQUIRE_PYTHON=1 to fail instead)")
	}
	var mu sync.Mutex
	var puts, deletes []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch r.Method {
		case http.MethodPut:
			puts = append(puts, strings.Split(r.URL.Path, "/")[3])
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":{"code":"bad_request","message":"column title: want text"}}`)
		case http.MethodDelete:
			session := strings.Split(r.URL.Path, "/")[3]
			deletes = append(deletes, session)
			_, _ = io.WriteString(w, `{"session":"`+session+`"}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"error":{"code":"not_found","message":"no"}}`)
		}
	}))
	defer srv.Close()

	script := `import sys
from tether_client import Device, TetherError
d = Device(sys.argv[1], "token", device="py-1")
d.save("notes", "n1", {"title": 1})
try:
    d.push({"notes": 1})
except TetherError as e:
    print(e.status)
`
	out, err := exec.Command(python, "-c", script, srv.URL).Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	if strings.TrimSpace(string(out)) != "400" {
		t.Errorf("python printed %q, want the refusal's 400", out)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(puts) != 1 || !slices.Equal(deletes, puts) {
		t.Errorf("sessions of batches %v, abandoned %v: want the refused push's session abandoned", puts, deletes)
	}
}
