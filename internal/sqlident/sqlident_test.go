package sqlident_test

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/tethersync/tether/internal/sqlident"
	_ "github.com/tethersync/tether/internal/sqlitedriver" // the SQLite driver
)

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"customers": `"customers"`,
		"":          `""`,
		`a"b`:       `"a""b"`,
		`"; DROP`:   `"""; DROP"`,
	} {
		if got := sqlident.Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestQuoteRoundTrip checks that SQLite reads a quoted identifier back as
// the original name, embedded quotes and all.
func TestQuoteRoundTrip(t *testing.T) {
	db, err := sql.Open("sqlite3", filepath.Join(t.TempDir(), "q.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	name := `we"ird; name`
	if _, err := db.Exec(`CREATE TABLE ` + sqlident.Quote(name) + ` (` + sqlident.Quote(`c"1`) + ` TEXT)`); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := db.QueryRow(`SELECT name FROM sqlite_master WHERE type = 'table'`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != name {
		t.Fatalf("table name %q, want %q", got, name)
	}
}
