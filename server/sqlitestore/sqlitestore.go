package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // the SQLite driver

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlitedsn"
	"github.com/tethersync/tether/server/sqlstore"
	"github.com/tethersync/tether/wire"
)

// Store is the embedded server store.
type Store = sqlstore.Store

// Options configure Open. The zero value works.
type Options struct {
	// Now is the clock of the store's time-based rules: session expiry,
	// device activity, retention and the times it records. Default
	// time.Now; tests set it to move time without waiting.
	Now func() time.Time
}

// Open opens or creates the server database at path with tables for
// schema. It adds missing tables and columns and never drops any;
// databases written by earlier versions of tether are upgraded in place.
func Open(path string, schema entity.Schema, opts Options) (*Store, error) {
	open := func(txlock string) (*sql.DB, error) {
		return sql.Open("sqlite3", sqlitedsn.DSN(path, map[string]string{"_journal_mode": "WAL", "_busy_timeout": "10000",
			"_txlock": txlock, "_synchronous": "NORMAL", "_stmt_cache_size": "64"}))
	}
	w, err := open("immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1) // the single writer
	r, err := open("deferred")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	s, err := sqlstore.New(context.Background(), w, Dialect{}, schema, sqlstore.Options{Read: r, Now: opts.Now})
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	return s, nil
}

// Dialect is the SQLite dialect of sqlstore.
type Dialect struct{}

// Name implements sqlstore.Dialect.
func (Dialect) Name() string { return "sqlite" }

// Rebind implements sqlstore.Dialect: SQLite reads ? placeholders.
func (Dialect) Rebind(q string) string { return q }

// Time implements sqlstore.Dialect: times are entity.TimeFormat text.
func (Dialect) Time(t time.Time) any { return entity.FormatTime(t) }

// ForUpdate implements sqlstore.Dialect: the single writer connection
// serializes every write transaction.
func (Dialect) ForUpdate() string { return "" }

// ReadOptions implements sqlstore.Dialect: a read transaction in WAL mode
// is a snapshot.
func (Dialect) ReadOptions() *sql.TxOptions { return nil }

// WriteOptions implements sqlstore.Dialect: the single writer.
func (Dialect) WriteOptions() *sql.TxOptions { return nil }

// Retryable implements sqlstore.Dialect: the single writer never
// deadlocks; a busy database has waited for its busy timeout already.
func (Dialect) Retryable(error) bool { return false }

// After implements sqlstore.Dialect with a row value.
func (Dialect) After(version int64, id string) (string, []any) {
	return sqlstore.RowValueAfter(version, id)
}

// Text implements sqlstore.Dialect.
func (Dialect) Text(col string) string { return col }

// JSON implements sqlstore.Dialect: JSON is text.
func (Dialect) JSON(expr string) string { return expr }

// ByteOrder implements sqlstore.Dialect: SQLite's BINARY collation.
func (Dialect) ByteOrder(col string) string { return col }

// NextVersion implements sqlstore.Dialect: one counter, under the single
// writer.
func (Dialect) NextVersion(ctx context.Context, tx *sql.Tx, _ string) (int64, error) {
	var v int64
	err := tx.QueryRowContext(ctx, `UPDATE _tether_counter SET version = version + 1 RETURNING version`).Scan(&v)
	return v, err
}

// Stage implements sqlstore.Dialect with multi-row inserts; a row staged
// again by a later batch replaces the earlier copy, and an earlier batch
// sent again does not replace a later one.
func (Dialect) Stage(ctx context.Context, _ *sql.Conn, tx *sql.Tx, t *sqlstore.Table, tenant, session string, seq int, rows []wire.Row) error {
	tail := `ON CONFLICT ("_tenant", "_session", "id") DO UPDATE SET ` +
		t.Assignments(func(c string) string { return "excluded." + c }, sqlstore.Restaged...) + ` WHERE excluded."_seq" >= "_seq"`
	return sqlstore.StageInsert(ctx, tx, t, tenant, session, seq, rows, tail)
}

// Latest implements sqlstore.Dialect: a session holds one copy of a row.
func (Dialect) Latest(t *sqlstore.Table) string {
	return `SELECT * FROM ` + t.Stage + ` WHERE "_tenant" = ? AND "_session" = ?`
}

// Upsert implements sqlstore.Dialect.
func (Dialect) Upsert(t *sqlstore.Table) string {
	return `ON CONFLICT ("_tenant", "id") DO UPDATE SET ` + t.Assignments(func(c string) string { return "excluded." + c }, sqlstore.Bookkeeping...) +
		`, "_colvers" = json_patch("_colvers", excluded."_colvers")`
}

// ColumnVersions implements sqlstore.Dialect.
func (Dialect) ColumnVersions(changed string) string {
	return `(SELECT json_group_object(j.value, ?) FROM json_each(` + changed + `) AS j)`
}

const ddl = `
CREATE TABLE IF NOT EXISTS _tether_counter (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
INSERT OR IGNORE INTO _tether_counter (id, version) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS _tether_devices (` + devicesCols + `);
CREATE TABLE IF NOT EXISTS _tether_sessions (` + sessionsCols + `);
CREATE TABLE IF NOT EXISTS _tether_horizons (tenant TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS _tether_audit (
	tenant TEXT NOT NULL, version INTEGER NOT NULL, tbl TEXT NOT NULL, id TEXT NOT NULL, deleted INTEGER NOT NULL,
	user_name TEXT NOT NULL, device TEXT NOT NULL, session TEXT NOT NULL, at TEXT NOT NULL,
	PRIMARY KEY (tenant, version, tbl, id));
`

// The devices and sessions tables, keyed by tenant: earlier versions keyed
// them by device and session id alone, and are rebuilt so.
const (
	devicesCols = `tenant TEXT NOT NULL, device TEXT NOT NULL, user_name TEXT NOT NULL,
	created_at TEXT NOT NULL, seen_at TEXT NOT NULL, app_schema TEXT NOT NULL DEFAULT '', pulled INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (tenant, device)`
	sessionsCols = `tenant TEXT NOT NULL, id TEXT NOT NULL, device TEXT NOT NULL, user_name TEXT NOT NULL,
	created_at TEXT NOT NULL, committed_at TEXT, version INTEGER, result TEXT, touched_at TEXT,
	cols TEXT NOT NULL DEFAULT '', PRIMARY KEY (tenant, id)`
)

const batchesDDL = `CREATE TABLE IF NOT EXISTS _tether_batches (
	tenant TEXT NOT NULL, session TEXT NOT NULL, seq INTEGER NOT NULL, tbl TEXT NOT NULL, rows INTEGER NOT NULL,
	bytes INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (tenant, session, seq))`

// Migrate implements sqlstore.Dialect. Databases of earlier versions are
// upgraded: the user column becomes user_name, batches and staged rows
// gain their tenant, sessions their touched_at.
func (Dialect) Migrate(ctx context.Context, tx *sql.Tx, tables []*sqlstore.Table) error {
	if _, err := tx.ExecContext(ctx, ddl); err != nil {
		return fmt.Errorf("create bookkeeping tables: %w", err)
	}
	for _, table := range []string{"_tether_devices", "_tether_sessions", "_tether_audit"} {
		have, err := columns(ctx, tx, table)
		if err != nil {
			return err
		}
		if have["user"] && !have["user_name"] {
			if _, err := tx.ExecContext(ctx, `ALTER TABLE `+table+` RENAME COLUMN "user" TO user_name`); err != nil {
				return fmt.Errorf("upgrade %s: %w", table, err)
			}
		}
	}
	if err := addColumns(ctx, tx, "_tether_sessions", []entity.Column{{Name: "touched_at", Kind: entity.KindTime, Nullable: true}}); err != nil {
		return err
	}
	for _, c := range []struct{ table, col, def string }{{"_tether_devices", "app_schema", `TEXT NOT NULL DEFAULT ''`},
		{"_tether_sessions", "cols", `TEXT NOT NULL DEFAULT ''`}, {"_tether_devices", "pulled", `INTEGER NOT NULL DEFAULT 0`}} {
		if err := addBookkeeping(ctx, tx, c.table, c.col, c.def); err != nil {
			return err
		}
	}
	for _, t := range []struct{ name, cols, copy string }{
		{"_tether_devices", devicesCols, "tenant, device, user_name, created_at, seen_at, app_schema, pulled"},
		{"_tether_sessions", sessionsCols, "tenant, id, device, user_name, created_at, committed_at, version, result, touched_at, cols"},
	} {
		var keys int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info(?) WHERE pk > 0`, t.name).Scan(&keys); err != nil {
			return err
		}
		if keys == 1 { // keyed without the tenant
			if _, err := tx.ExecContext(ctx, `ALTER TABLE `+t.name+` RENAME TO `+t.name+`_old;
				CREATE TABLE `+t.name+` (`+t.cols+`);
				INSERT INTO `+t.name+` (`+t.copy+`) SELECT `+t.copy+` FROM `+t.name+`_old;
				DROP TABLE `+t.name+`_old`); err != nil {
				return fmt.Errorf("upgrade %s: %w", t.name, err)
			}
		}
	}
	have, err := columns(ctx, tx, "_tether_batches")
	if err != nil {
		return err
	}
	if len(have) > 0 && !have["tenant"] {
		// Sessions staged by a much older version kept their rows as JSON
		// in the batches' body: forget them, their devices push again.
		// The others' batches move into the new table with their tenant.
		if _, err := tx.ExecContext(ctx, `DELETE FROM _tether_sessions WHERE committed_at IS NULL
			AND id IN (SELECT session FROM _tether_batches WHERE length(body) > 0);
			DELETE FROM _tether_batches WHERE length(body) > 0;
			ALTER TABLE _tether_batches RENAME TO _tether_batches_old;`+batchesDDL+`;
			INSERT INTO _tether_batches (tenant, session, seq, tbl, rows)
				SELECT s.tenant, b.session, b.seq, b.tbl, b.rows FROM _tether_batches_old AS b JOIN _tether_sessions AS s ON s.id = b.session;
			DROP TABLE _tether_batches_old`); err != nil {
			return fmt.Errorf("upgrade _tether_batches: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, batchesDDL); err != nil {
		return fmt.Errorf("create _tether_batches: %w", err)
	}
	// A device's open sessions are looked up at every open: without an
	// index, every committed session of the tenant (kept for
	// SessionRetention) would be read.
	if _, err := tx.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS _tether_sessions__open ON _tether_sessions (tenant, device, user_name)
		WHERE committed_at IS NULL`); err != nil {
		return fmt.Errorf("index _tether_sessions: %w", err)
	}
	if err := addBookkeeping(ctx, tx, "_tether_batches", "bytes", `INTEGER NOT NULL DEFAULT 0`); err != nil {
		return err
	}
	if err := addBookkeeping(ctx, tx, "_tether_batches", "attempt", `INTEGER NOT NULL DEFAULT 0`); err != nil {
		return err
	}
	for _, t := range tables {
		if err := migrateTable(ctx, tx, t); err != nil {
			return fmt.Errorf("table %s: %w", t.T.Name, err)
		}
	}
	return nil
}

func migrateTable(ctx context.Context, tx *sql.Tx, t *sqlstore.Table) error {
	var defs []string
	for i, c := range t.T.Columns {
		def := t.Cols[i] + " " + c.Kind.SQLiteType()
		if c.Name == "id" {
			def += " NOT NULL"
		}
		defs = append(defs, def)
	}
	ddl := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	"_tenant" TEXT NOT NULL,
	%s,
	"_version" INTEGER NOT NULL,
	"_deleted" INTEGER NOT NULL DEFAULT 0,
	"_hlc" TEXT NOT NULL,
	"_modified_by" TEXT NOT NULL,
	"_origin" TEXT NOT NULL,
	"_session" TEXT NOT NULL,
	PRIMARY KEY ("_tenant", "id"))`, t.Name, strings.Join(defs, ",\n\t"))
	if _, err := tx.ExecContext(ctx, ddl); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	if err := addColumns(ctx, tx, t.T.Name, t.T.Columns); err != nil {
		return err
	}
	for _, b := range []struct{ name, def string }{{"_colvers", `TEXT NOT NULL DEFAULT '{}'`},
		{"_reason", `TEXT NOT NULL DEFAULT ''`}, {"_notify", `TEXT NOT NULL DEFAULT ''`}, {"_pushed", `INTEGER NOT NULL DEFAULT 0`}} {
		if err := addBookkeeping(ctx, tx, t.T.Name, b.name, b.def); err != nil {
			return err
		}
	}
	stage := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	"_tenant" TEXT NOT NULL,
	"_session" TEXT NOT NULL,
	"_seq" INTEGER NOT NULL,
	"_base" INTEGER NOT NULL,
	"_deleted" INTEGER NOT NULL,
	"_hlc" TEXT NOT NULL,
	"_changed" TEXT NOT NULL DEFAULT '[]',
	"_present" TEXT NOT NULL DEFAULT '',
	"_exact" INTEGER NOT NULL DEFAULT 0,
	%s,
	PRIMARY KEY ("_tenant", "_session", "id"));
CREATE INDEX IF NOT EXISTS %s ON %s ("_session", "_seq")`,
		t.Stage, strings.Join(defs, ",\n\t"), sqlstore.Quote(t.StageName+"__seq"), t.Stage)
	if _, err := tx.ExecContext(ctx, stage); err != nil {
		return fmt.Errorf("create staging table: %w", err)
	}
	if err := addColumns(ctx, tx, t.StageName, t.T.Columns); err != nil {
		return err
	}
	if err := addBookkeeping(ctx, tx, t.StageName, "_changed", `TEXT NOT NULL DEFAULT '[]'`); err != nil {
		return err
	}
	if err := addBookkeeping(ctx, tx, t.StageName, "_present", `TEXT NOT NULL DEFAULT ''`); err != nil {
		return err
	}
	if err := addBookkeeping(ctx, tx, t.StageName, "_exact", `INTEGER NOT NULL DEFAULT 0`); err != nil {
		return err
	}
	have, err := columns(ctx, tx, t.StageName)
	if err != nil {
		return err
	}
	if !have["_tenant"] { // staged by an earlier version: the session knows the tenant
		if err := addBookkeeping(ctx, tx, t.StageName, "_tenant", `TEXT NOT NULL DEFAULT ''`); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE `+t.Stage+` SET "_tenant" = coalesce((SELECT tenant FROM _tether_sessions WHERE id = "_session"), '')`); err != nil {
			return fmt.Errorf("upgrade staging table: %w", err)
		}
	}
	// Staging tables of earlier versions were keyed by session and id,
	// without the tenant: rebuilt, with what they hold.
	var keys int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info(?) WHERE pk > 0`, t.StageName).Scan(&keys); err != nil {
		return err
	}
	if keys == 2 {
		cols := make([]string, len(t.StageCols))
		for i, c := range t.StageCols {
			cols[i] = sqlstore.Quote(c)
		}
		list := strings.Join(cols, ", ")
		old := sqlstore.Quote(t.StageName + "_old")
		if _, err := tx.ExecContext(ctx, `DROP INDEX IF EXISTS `+sqlstore.Quote(t.StageName+"__seq")+`;
			ALTER TABLE `+t.Stage+` RENAME TO `+old+`;`+stage+`;
			INSERT INTO `+t.Stage+` (`+list+`) SELECT `+list+` FROM `+old+`;
			DROP TABLE `+old); err != nil {
			return fmt.Errorf("upgrade staging table: %w", err)
		}
	}
	for _, ix := range t.RefIndexes() {
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s (%s)`, ix[0], t.Name, ix[1])); err != nil {
			return fmt.Errorf("index a reference: %w", err)
		}
	}
	_, err = tx.ExecContext(ctx, fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s ("_tenant", "_version", "id")`, sqlstore.Quote(t.T.Name+"__changes"), t.Name))
	return err
}

// columns returns the columns table has (none when it does not exist).
func columns(ctx context.Context, tx *sql.Tx, table string) (map[string]bool, error) {
	return sqlstore.Set(sqlstore.Strings(ctx, tx, `SELECT name FROM pragma_table_info(?)`, table))
}

// addBookkeeping adds the bookkeeping column name with definition def to
// table when it lacks it.
func addBookkeeping(ctx context.Context, tx *sql.Tx, table, name, def string) error {
	have, err := columns(ctx, tx, table)
	if err != nil || have[name] {
		return err
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`ALTER TABLE %s ADD COLUMN %s %s`, sqlstore.Quote(table), sqlstore.Quote(name), def)); err != nil {
		return fmt.Errorf("add column %s to %s: %w", name, table, err)
	}
	return nil
}

// addColumns adds the columns of cols that table lacks.
func addColumns(ctx context.Context, tx *sql.Tx, table string, cols []entity.Column) error {
	have, err := columns(ctx, tx, table)
	if err != nil {
		return err
	}
	for _, c := range cols {
		if !have[c.Name] {
			// The rows already there take the column's default.
			if _, err := tx.ExecContext(ctx, fmt.Sprintf(`ALTER TABLE %s ADD COLUMN %s %s DEFAULT %s`, sqlstore.Quote(table), sqlstore.Quote(c.Name), c.Kind.SQLiteType(), c.Default())); err != nil {
				return fmt.Errorf("add column %s to %s: %w", c.Name, table, err)
			}
		}
	}
	return nil
}
