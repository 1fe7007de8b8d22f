package sqlitedsn_test

import (
	"net/url"
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

func TestQueryRepeats(t *testing.T) {
	q := url.Values{"_pragma": {"busy_timeout(5000)", "journal_mode(WAL)"}, "_txlock": {"deferred"}}
	got := sqlitedsn.Query("a.db", q)
	want := "file:a.db?_pragma=busy_timeout%285000%29&_pragma=journal_mode%28WAL%29&_txlock=deferred"
	if got != want {
		t.Errorf("Query = %q, want %q", got, want)
	}
}
