package sqlitestore

import (
	"fmt"

	"github.com/tethersync/tether/internal/sqlident"
	"github.com/tethersync/tether/server/sqlstore"
)

var _ sqlstore.Capturing = dialect{}

// captureStamp is the clock stamp of a captured write: the database's
// clock, in milliseconds.
const captureStamp = `printf('%013d', CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)) || '` + sqlstore.StampSuffix + `'`

// CaptureTriggers implements sqlstore.Capturing: one trigger per event.
// An updated row's version goes to 0 by a second UPDATE, which the
// trigger does not record (it changes the version).
func (dialect) CaptureTriggers(t sqlstore.CaptureTable) []string {
	record := func(row, deleted string) string {
		return t.Record("INSERT OR REPLACE INTO", "", row, deleted, captureStamp)
	}
	table := sqlident.Quote(t.Table)
	return []string{
		fmt.Sprintf(`CREATE TRIGGER %s AFTER INSERT ON %s WHEN NEW."_version" = 0 BEGIN %s; END`,
			sqlident.Quote(t.Trigger+"_insert"), table, record("NEW", "FALSE")),
		fmt.Sprintf(`CREATE TRIGGER %s AFTER UPDATE ON %s WHEN NEW."_version" = OLD."_version" BEGIN %s; %s; END`,
			sqlident.Quote(t.Trigger+"_update"), table, record("NEW", "FALSE"),
			`UPDATE `+table+` SET "_version" = 0 WHERE "_tenant" = NEW."_tenant" AND "id" = NEW."id" AND "_version" <> 0`),
		fmt.Sprintf(`CREATE TRIGGER %s AFTER DELETE ON %s WHEN NOT OLD."_deleted" BEGIN %s; %s; END`,
			sqlident.Quote(t.Trigger+"_delete"), table, record("OLD", "TRUE"), t.StageOld("INSERT OR REPLACE INTO", nil, captureStamp)),
	}
}

// DropCaptureTriggers implements sqlstore.Capturing.
func (dialect) DropCaptureTriggers(t sqlstore.CaptureTable) []string {
	var out []string
	for _, event := range []string{"_insert", "_update", "_delete"} {
		out = append(out, `DROP TRIGGER IF EXISTS `+sqlident.Quote(t.Trigger+event))
	}
	return out
}

// SkipLocked implements sqlstore.Capturing: the single writer connection serializes every write transaction.
func (dialect) SkipLocked() string { return "" }
