package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
)

// logBuffer is a JSON log of the lines a server writes, safe for the
// server's goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the logged lines, decoded.
func (b *logBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// get requests path of srv with token ("" for none), and returns the status.
func get(t *testing.T, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestRequestLog(t *testing.T) {
	for _, all := range []bool{true, false} {
		name := "LogRequests"
		if !all {
			name = "failures"
		}
		t.Run(name, func(t *testing.T) {
			var logs logBuffer
			logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			reg := testkit.Registry(t)
			srv := testkit.NewServer(t, reg, server.Options{Logger: logger, LogRequests: all, SweepInterval: -1})
			ada := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{})
			if err := ada.DB.Save(t.Context(), &testkit.Customer{Name: "a"}); err != nil {
				t.Fatal(err)
			}
			ada.Sync(t)
			if got := get(t, srv.URL+"/v1/changes", ""); got != http.StatusUnauthorized {
				t.Fatalf("changes without a token: %d, want 401", got)
			}
			srv.Store.Close() // every request that reads the store now fails
			if got := get(t, srv.URL+"/v1/changes", "token-ada"); got != http.StatusInternalServerError {
				t.Fatalf("changes on a closed store: %d, want 500", got)
			}

			byStatus := map[float64]map[string]any{}
			var devices []string
			for _, l := range logs.lines(t) {
				if l["msg"] != "tether request" {
					continue
				}
				for _, f := range []string{"method", "route", "path", "status", "duration", "tenant", "device", "bytes_in", "bytes_out"} {
					if _, ok := l[f]; !ok {
						t.Errorf("line %v: no field %s", l, f)
					}
				}
				byStatus[l["status"].(float64)] = l
				if d, _ := l["device"].(string); d != "" {
					devices = append(devices, d)
				}
			}
			fail := byStatus[500]
			if fail == nil {
				t.Fatalf("no line of the 500: %v", logs.lines(t))
			}
			if fail["level"] != "ERROR" || fail["route"] != "GET /v1/changes" || fail["tenant"] != "acme" || fail["code"] != "internal" || fail["err"] == nil {
				t.Errorf("line of the 500: %v, want level ERROR, route GET /v1/changes, tenant acme, code internal and its error", fail)
			}
			if !all {
				if len(byStatus) != 1 {
					t.Errorf("without LogRequests, lines of statuses %v, want the 500's only", byStatus)
				}
				return
			}
			if l := byStatus[401]; l == nil || l["level"] != "WARN" || l["code"] != "unauthorized" || l["tenant"] != "" {
				t.Errorf("line of the 401: %v, want level WARN, code unauthorized, no tenant", l)
			}
			ok := byStatus[200]
			if ok == nil || ok["level"] != "INFO" || ok["tenant"] != "acme" || ok["bytes_out"].(float64) <= 0 {
				t.Errorf("a line of a 200: %v, want level INFO, tenant acme and the bytes written", ok)
			}
			if len(devices) == 0 {
				t.Errorf("no line names the device that synced")
			}
		})
	}
}
