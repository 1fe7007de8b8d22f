package testkit

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// Each fault does the same through the transport and through the proxy:
// the server sees the request as many times as the fault says, and the
// client gets the answer, a status, or an error.
func TestFaultsAlike(t *testing.T) {
	var delivered atomic.Int64
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		delivered.Add(1)
		io.WriteString(w, strings.Repeat("answer ", 100))
	}))
	defer upstream.Close()
	tests := []struct {
		fault     Fault
		delivered int64
		status    int // 0: an error, before or while reading the body
	}{
		{Pass, 1, 200}, {DropRequest, 0, 0}, {DropResponse, 1, 0}, {Duplicate, 2, 200}, {Delay, 1, 200},
		{Status500, 1, 500}, {Status503, 0, 503}, {Status429, 0, 429}, {Reset, 1, 0}, {Truncate, 1, 0},
		{Status413, 0, 413}, {Status502, 0, 502}, {ProxyStatus413, 0, 413},
	}
	if len(tests) != int(numFaults) {
		t.Fatalf("%d faults tested, %d defined", len(tests), numFaults)
	}
	for _, tc := range tests {
		t.Run(tc.fault.String(), func(t *testing.T) {
			ft := &FaultTransport{Decide: func(*http.Request, string, int) Fault { return tc.fault }}
			proxy := NewProxy(upstream.URL, 1)
			defer proxy.Close()
			proxy.SetRate(tc.fault, 1)
			proxy.Enable(tc.fault != Pass)
			for _, via := range []struct {
				name   string
				url    string
				client *http.Client
			}{
				{"transport", upstream.URL, &http.Client{Transport: ft}},
				{"proxy", proxy.URL(), &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}},
			} {
				before := delivered.Load()
				status := 0
				resp, err := via.client.Post(via.url+"/v1/changes", "application/json", strings.NewReader("{}"))
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil {
						status = resp.StatusCode
					}
				}
				if got := delivered.Load() - before; got != tc.delivered || status != tc.status {
					t.Errorf("%s: delivered %d times, status %d (%v); want %d times, status %d",
						via.name, got, status, err, tc.delivered, tc.status)
				}
			}
		})
	}
}
