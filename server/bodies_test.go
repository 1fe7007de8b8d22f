package server_test

import (
	"strings"
	"testing"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// An error answer quotes little of the request: a request carrying a
// value of hundreds of KB where the server objects to it (a header, a
// path, a query parameter, a column value) gets its 4xx in under 1 KiB,
// on every endpoint that takes a body and the others.
func TestErrorAnswersClipped(t *testing.T) {
	reg := testkit.Registry(t)
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		srv := testkit.Serve(t, db.Open(t, reg.Schema(), stores.Options{}), server.Options{})
		session := openSession(t, srv.URL, "token-ada", device)
		huge := strings.Repeat("x", 512<<10)
		batch := "/v1/sessions/" + session + "/batches/0"
		order := `{"rows":[{"table":"orders","id":"o1","hlc":"1700000000000.000000.` + device +
			`","values":{"customer_id":"c1","total":"` + strings.Repeat("9", 3<<20) + `","placed_at":"2024-01-01T00:00:00Z"}}]}`
		endpoints := []struct{ method, path, body string }{
			{"POST", "/v1/devices", `{"device":"` + device + `"}`},
			{"POST", "/v1/sessions", `{}`},
			{"PUT", batch, `{"rows":[` + goodRow + `]}`},
			{"POST", "/v1/sessions/" + session + "/commit", `{}`},
			{"POST", "/v1/digest", `{"columns":{"customers":["id"]}}`},
		}
		type request struct {
			name, method, path, body string
			headers                  []string
		}
		var tests []request
		for _, e := range endpoints {
			tests = append(tests,
				request{e.method + " " + e.path + " Content-Type", e.method, e.path, e.body, []string{"Content-Type", huge}},
				request{e.method + " " + e.path + " Content-Encoding", e.method, e.path, e.body, []string{"Content-Encoding", huge}},
				request{e.method + " " + e.path + " tenant header", e.method, e.path, e.body, []string{wire.HeaderTenant, huge}},
			)
		}
		tests = append(tests,
			request{"batch number", "PUT", "/v1/sessions/" + session + "/batches/" + huge, `{"rows":[` + goodRow + `]}`, nil},
			request{"batch parameter", "PUT", batch + "?open=" + huge, `{"rows":[` + goodRow + `]}`, nil},
			request{"a value of 3 MB of the wrong kind", "PUT", batch, order, nil},
			request{"page limit", "GET", "/v1/changes?limit=" + huge, "", nil},
			request{"snapshot cursor", "GET", "/v1/snapshot?cursor=" + huge, "", nil},
		)
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				st, code, body := call(t, tc.method, srv.URL+tc.path, "token-ada", tc.body, tc.headers...)
				t.Logf("%d %s, %d bytes: %.200s", st, code, len(body), body)
				if st < 400 || st >= 500 {
					t.Errorf("status %d, want a 4xx", st)
				}
				if len(body) > 1<<10 {
					t.Errorf("answer of %d bytes, more than 1 KiB", len(body))
				}
			})
		}
	})
}
