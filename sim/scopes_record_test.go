package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"

	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// pullLog records, for the explanations of TestScopes, the rows each
// pull page and snapshot page brought a device, with the cursors: a
// RoundTripper between its client and the proxy.
type pullLog struct {
	base    http.RoundTripper
	mu      sync.Mutex
	entries []string // the latest, at most maxPullLog
	seq     int
}

const maxPullLog = 50_000

func (l *pullLog) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.base.RoundTrip(r)
	kind := ""
	switch {
	case strings.HasPrefix(r.URL.Path, "/v1/changes"):
		kind = "pull"
	case strings.HasPrefix(r.URL.Path, "/v1/snapshot"):
		kind = "snapshot"
	}
	if err != nil || kind == "" || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	plain := body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return resp, nil
		}
		if plain, err = io.ReadAll(zr); err != nil {
			return resp, nil
		}
	}
	var page struct {
		Changes []wire.Row `json:"changes"`
		Rows    []wire.Row `json:"rows"`
		Cursor  string     `json:"cursor"`
	}
	if json.Unmarshal(plain, &page) != nil {
		return resp, nil
	}
	from := cursorText(r.URL.Query().Get("cursor"))
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	for _, row := range append(page.Changes, page.Rows...) {
		l.entries = append(l.entries, fmt.Sprintf("%s page %d (from %s to %s): %s %s version %d deleted %v evict %v",
			kind, l.seq, from, cursorText(page.Cursor), row.Table, row.ID, row.Version, row.Deleted, row.Evict))
	}
	if n := len(l.entries); n > maxPullLog {
		l.entries = append([]string(nil), l.entries[n-maxPullLog/2:]...)
	}
	return resp, nil
}

// about returns the entries that name one of ids.
func (l *pullLog) about(ids ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.entries {
		for _, id := range ids {
			if strings.Contains(e, " "+id+" ") {
				out = append(out, e)
				break
			}
		}
	}
	return out
}

// cursorText decodes a cursor for a log.
func cursorText(s string) string {
	c, err := server.ParseCursor(s)
	if err != nil || s == "" {
		return fmt.Sprintf("%q", s)
	}
	if c.Phase == server.PhaseNone {
		return fmt.Sprintf("v%d", c.Version)
	}
	return fmt.Sprintf("v%d phase %c keys %.8s at %d/%s", c.Version, c.Phase, c.Keys, c.At.Table, c.At.ID)
}
