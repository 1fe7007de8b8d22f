package pgstore

import (
	"fmt"

	"github.com/tethersync/tether/internal/sqlident"
	"github.com/tethersync/tether/server/sqlstore"
)

var _ sqlstore.Capturing = (*dialect)(nil)

// captureStamp is the clock stamp of a captured write: the database's
// clock at the write, in milliseconds.
const captureStamp = `lpad(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint::text, 13, '0') || '` + sqlstore.StampSuffix + `'`

// CaptureTriggers implements sqlstore.Capturing: a trigger function and
// its row trigger, which runs before the write so that it sets an updated
// row's version to 0. A staging table has no key here (COPY keeps every
// copy): a DELETE drops the last values an earlier one kept before it
// keeps its own (PostgreSQL locks no gaps).
func (*dialect) CaptureTriggers(t sqlstore.CaptureTable) []string {
	upsert := ` ON CONFLICT (tenant, tbl, id) DO UPDATE SET deleted = excluded.deleted, hlc = excluded.hlc`
	fn := sqlident.Quote(t.Trigger)
	return []string{
		fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $tether$
BEGIN
	IF TG_OP = 'DELETE' THEN
		IF NOT OLD."_deleted" THEN
			%s;
			%s;
			%s;
		END IF;
		RETURN OLD;
	END IF;
	IF (TG_OP = 'INSERT' AND NEW."_version" = 0) OR (TG_OP = 'UPDATE' AND NEW."_version" = OLD."_version") THEN
		%s;
		NEW."_version" := 0;
	END IF;
	RETURN NEW;
END
$tether$`, fn, t.Record("INSERT INTO", upsert, "OLD", "TRUE", captureStamp), t.Unstage("OLD"), t.StageOld("INSERT INTO", nil, captureStamp),
			t.Record("INSERT INTO", upsert, "NEW", "FALSE", captureStamp)),
		fmt.Sprintf(`CREATE TRIGGER %s BEFORE INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s()`,
			fn, sqlident.Quote(t.Table), fn),
	}
}

// DropCaptureTriggers implements sqlstore.Capturing.
func (*dialect) DropCaptureTriggers(t sqlstore.CaptureTable) []string {
	fn := sqlident.Quote(t.Trigger)
	return []string{
		`DROP TRIGGER IF EXISTS ` + fn + ` ON ` + sqlident.Quote(t.Table),
		`DROP FUNCTION IF EXISTS ` + fn + `()`,
	}
}

// SkipLocked implements sqlstore.Capturing.
func (*dialect) SkipLocked() string { return " FOR UPDATE SKIP LOCKED" }
