package sqlitedsn_test

import (
	"testing"

	"github.com/tethersync/tether/internal/sqlitedsn"
)

func TestDSN(t *testing.T) {
	for _, c := range []struct {
		path   string
		params map[string]string
		want   string
	}{
		{"/tmp/a.db", nil, "file:/tmp/a.db"},
		{"a.db", map[string]string{"_txlock": "immediate", "_journal_mode": "WAL", "_busy_timeout": "10000"},
			"file:a.db?_busy_timeout=10000&_journal_mode=WAL&_txlock=immediate"},
		{"a.db", map[string]string{"mode": "ro", "x": "a b&c"}, "file:a.db?mode=ro&x=a+b%26c"},
	} {
		if got := sqlitedsn.DSN(c.path, c.params); got != c.want {
			t.Errorf("DSN(%q, %v) = %q, want %q", c.path, c.params, got, c.want)
		}
	}
}
