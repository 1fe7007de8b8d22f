package server_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// Every error about a value's format says the format it wants, with an
// example: a client in another language learns it from the refusal.
func TestErrorsSayTheFormat(t *testing.T) {
	store := stores.Open(t, stores.SQLite, kindsSchema, stores.Options{})
	_, url := writeTestServer(t, store, server.Options{})
	const dev = "dev-1"
	hdr := []string{wire.HeaderDevice, dev}
	if st, _, body := call(t, "POST", url+"/v1/devices", "token-ada", `{"device":"`+dev+`"}`, hdr...); st != 200 {
		t.Fatalf("register: %d %s", st, body)
	}
	stamp := wire.FormatStamp(1700000000000, 0, dev)
	row := func(hlc, col, value string) string {
		return `{"rows":[{"table":"parents","id":"p1","hlc":"` + hlc + `","values":{"` + col + `":` + value + `}}]}`
	}
	push := url + "/v1/sessions/s1/batches/0?open=1"
	for _, tt := range []struct {
		name, method, url, body string
		headers                 []string
		want                    string
	}{
		{"stamp", "PUT", push, row("1700000000000.1."+dev, "name", `"x"`), hdr, wire.StampFormat},
		{"time", "PUT", push, row(stamp, "at", `"yesterday"`), hdr, entity.KindTime.WireFormat()},
		{"json", "PUT", push, row(stamp, "tags", `["a"]`), hdr, entity.KindJSON.WireFormat()},
		{"blob", "PUT", push, row(stamp, "data", `"%%%"`), hdr, entity.KindBlob.WireFormat()},
		{"integer", "PUT", push, row(stamp, "count", `1.5`), hdr, entity.KindInteger.WireFormat()},
		{"device header", "GET", url + "/v1/changes", "", []string{wire.HeaderDevice, "dev_1"}, wire.IDFormat},
		{"device id", "POST", url + "/v1/devices", `{"device":"dev 1"}`, hdr, wire.IDFormat},
		{"session id", "POST", url + "/v1/sessions", `{"session":"s_1"}`, hdr, wire.SessionIDFormat},
		{"own", "GET", url + "/v1/changes?own=a.b", "", hdr, wire.SessionIDFormat},
		{"cursor", "GET", url + "/v1/changes?cursor=nope", "", hdr, wire.CursorFormat},
		{"snapshot cursor", "GET", url + "/v1/snapshot?cursor=nope", "", hdr, wire.CursorFormat},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, code, body := call(t, tt.method, tt.url, "token-ada", tt.body, tt.headers...)
			if st != 400 || code != "bad_request" {
				t.Fatalf("%s %s: %d %s, want 400 bad_request", tt.method, tt.url, st, body)
			}
			var eb wire.ErrorBody
			if err := json.Unmarshal(body, &eb); err != nil || !strings.Contains(eb.Error.Message, tt.want) {
				t.Fatalf("answer %s does not say the format %q", body, tt.want)
			}
		})
	}
}
