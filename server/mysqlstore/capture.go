package mysqlstore

import (
	"fmt"
	"strings"

	"github.com/tethersync/tether/internal/sqlident"
	"github.com/tethersync/tether/server/sqlstore"
)

var _ sqlstore.Capturing = (*dialect)(nil)

// captureStamp is the clock stamp of a captured write: the database's
// clock at the write, in milliseconds.
const captureStamp = `CONCAT(LPAD(FLOOR(UNIX_TIMESTAMP(SYSDATE(3)) * 1000), 13, '0'), '` + sqlstore.StampSuffix + `')`

// CaptureTriggers implements sqlstore.Capturing: one trigger per event;
// the UPDATE's runs before the write, so that it sets the row's version
// to 0.
// A trigger cannot write the table its statement writes, so a DELETE
// keeps its row's last values in the staging table (as in every
// database).
func (*dialect) CaptureTriggers(t sqlstore.CaptureTable) []string {
	record := func(row, deleted string) string {
		return t.Record("INSERT INTO", " ON DUPLICATE KEY UPDATE deleted = VALUES(deleted), hlc = VALUES(hlc)", row, deleted, captureStamp)
	}
	table := sqlident.Quote(t.Table)
	return []string{
		fmt.Sprintf(`CREATE TRIGGER %s AFTER INSERT ON %s FOR EACH ROW BEGIN IF NEW."_version" = 0 THEN %s; END IF; END`,
			sqlident.Quote(t.Trigger+"_insert"), table, record("NEW", "FALSE")),
		fmt.Sprintf(`CREATE TRIGGER %s BEFORE UPDATE ON %s FOR EACH ROW BEGIN IF NEW."_version" = OLD."_version" THEN %s; SET NEW."_version" = 0; END IF; END`,
			sqlident.Quote(t.Trigger+"_update"), table, record("NEW", "FALSE")),
		fmt.Sprintf(`CREATE TRIGGER %s AFTER DELETE ON %s FOR EACH ROW BEGIN IF NOT OLD."_deleted" THEN %s; %s; END IF; END`,
			sqlident.Quote(t.Trigger+"_delete"), table, record("OLD", "TRUE"), t.StageOld("INSERT INTO", stageUpsert, captureStamp)),
	}
}

// stageUpsert replaces the last values an earlier DELETE of a row kept.
func stageUpsert(cols []string) string {
	set := make([]string, len(cols))
	for i, c := range cols {
		set[i] = c + " = VALUES(" + c + ")"
	}
	return " ON DUPLICATE KEY UPDATE " + strings.Join(set, ", ")
}

// DropCaptureTriggers implements sqlstore.Capturing.
func (*dialect) DropCaptureTriggers(t sqlstore.CaptureTable) []string {
	var out []string
	for _, event := range []string{"_insert", "_update", "_delete"} {
		out = append(out, `DROP TRIGGER IF EXISTS `+sqlident.Quote(t.Trigger+event))
	}
	return out
}

// SkipLocked implements sqlstore.Capturing.
func (*dialect) SkipLocked() string { return " FOR UPDATE SKIP LOCKED" }
