package entity_test

import (
	"strings"
	"testing"

	"github.com/tethersync/tether/entity"
)

// A schema file with a key that is not the schema's is refused, by the
// key's name, instead of having the key ignored.
func TestParseSchemaStrict(t *testing.T) {
	const good = `{"tables":[{"name":"notes","priority":1,"columns":[{"name":"id","kind":"text"},{"name":"body","kind":"text","nullable":true}]}]}`
	if _, err := entity.ParseSchema([]byte(good)); err != nil {
		t.Fatalf("ParseSchema(good) = %v", err)
	}
	for _, tt := range []struct{ name, data, want string }{
		{"top", `{"tables":[],"version":2}`, `unknown key "version"`},
		{"table", `{"tables":[{"name":"notes","prio":1,"columns":[{"name":"id","kind":"text"}]}]}`, `unknown key "prio"`},
		{"column", strings.Replace(good, `"nullable"`, `"nulable"`, 1), `unknown key "nulable"`},
		{"trailing", good + `}`, "data after"},
		{"second object", good + good, "data after"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := entity.ParseSchema([]byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseSchema = %v, want an error with %q", err, tt.want)
			}
			if tt.want[0] == 'u' && !strings.Contains(err.Error(), `"nullable"`) {
				t.Errorf("error %q does not list the keys there are", err)
			}
		})
	}
}

// An error about a value's form says the form wanted, with an example.
func TestFromWireSaysFormat(t *testing.T) {
	for _, tt := range []struct {
		kind entity.Kind
		v    any
		want string
	}{
		{entity.KindTime, "yesterday", `such as "2024-05-01T12:00:00.000000000Z"`},
		{entity.KindTime, 5.0, "RFC 3339"},
		{entity.KindJSON, "{not json", `a string holding JSON text, such as "{\"a\":1}"`},
		{entity.KindJSON, map[string]any{"a": 1.0}, "a string holding JSON text"},
		{entity.KindBlob, "%%%", `standard base64 with padding, such as "aGVsbG8="`},
		{entity.KindInteger, "7", "such as 42"},
		{entity.KindBool, "yes", "true or false"},
	} {
		t.Run(string(tt.kind), func(t *testing.T) {
			_, err := tt.kind.FromWire(tt.v)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("FromWire(%v) = %v, want an error with %q", tt.v, err, tt.want)
			}
		})
	}
}
