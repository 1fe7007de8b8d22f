package e2e

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
)

// writeLog is a ResponseWriter that records its writes and flushes in
// order.
type writeLog struct {
	header http.Header
	events []string // "flush", or the bytes of a write
	body   bytes.Buffer
}

func (l *writeLog) Header() http.Header { return l.header }
func (l *writeLog) WriteHeader(int)     {}
func (l *writeLog) Write(b []byte) (int, error) {
	l.events = append(l.events, string(b))
	l.body.Write(b)
	return len(b), nil
}
func (l *writeLog) Flush() { l.events = append(l.events, "flush") }

// sentFirst returns what was written before the first flush, decompressed
// when gz, or "" when nothing was flushed before the end.
func (l *writeLog) sentFirst(t *testing.T, gz bool) string {
	t.Helper()
	var first []byte
	flushed := false
	for i, e := range l.events {
		if e == "flush" {
			flushed = i < len(l.events)-1 // a flush at the end sends nothing ahead
			break
		}
		first = append(first, e...)
	}
	if !flushed {
		return ""
	}
	if !gz {
		return string(first)
	}
	zr, err := gzip.NewReader(bytes.NewReader(first))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatal(err)
	}
	return string(out)
}

// A pull page with more after it goes to the client in two parts: where
// it ends, sent at once, so that the device asks for the next page while
// the server encodes this one's rows; then its rows. The last page, and a
// page of few rows, go in one write. Compressed or not.
func TestPageHeadGoesFirst(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{})
	saveCustomers(t, a, 250, "c") // one session: the pages are partial
	a.Sync(t)
	for _, gz := range []bool{false, true} {
		for _, tc := range []struct {
			limit int
			head  string // what is sent ahead of the rows, or ""
		}{
			{100, `,"more":true,"wait":false,"partial":true,"changes":`},
			{50, ""},   // too few rows to be worth a flush
			{1000, ""}, // the last page
		} {
			t.Run(fmt.Sprintf("gzip %v, limit %d", gz, tc.limit), func(t *testing.T) {
				req := httptest.NewRequest(http.MethodGet, fmt.Sprintf("/v1/changes?cursor=&limit=%d", tc.limit), nil)
				req.Header.Set("Authorization", "Bearer token-ada")
				if gz {
					req.Header.Set("Accept-Encoding", "gzip")
				}
				l := &writeLog{header: http.Header{}}
				srv.Config.Handler.ServeHTTP(l, req)
				first := l.sentFirst(t, gz)
				if tc.head == "" {
					if first != "" {
						t.Errorf("sent ahead of the rest: %.80q, want one write", first)
					}
				} else if !strings.HasPrefix(first, `{"cursor":"`) || !strings.HasSuffix(first, tc.head) {
					t.Errorf("sent ahead of the rows: %.200q, want the page's head ending %q", first, tc.head)
				}
				body := l.body.Bytes()
				if gz {
					zr, err := gzip.NewReader(bytes.NewReader(body))
					if err != nil {
						t.Fatal(err)
					}
					if body, err = io.ReadAll(zr); err != nil {
						t.Fatal(err)
					}
				}
				if n := bytes.Count(body, []byte(`"table":"customers"`)); n != min(tc.limit, 250) {
					t.Errorf("page of %d rows, want %d", n, min(tc.limit, 250))
				}
			})
		}
	}
}
