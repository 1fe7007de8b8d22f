package sqlstore

import (
	"fmt"
	"strings"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlident"
)

// Type is the abstract type of a column of a table the store creates; each
// dialect spells it in its own types ([Dialect.CreateTable]). The widths
// are those MySQL needs to index a column; the other databases store text
// of any length.
type Type int

// The column types.
const (
	// TypeKey is a tenant or a user name: text of up to 255 bytes.
	TypeKey Type = iota
	// TypeID is a device or session id, a table name or a SHA-256 in hex:
	// up to 64 bytes.
	TypeID
	// TypeRowID is a row id: up to 200 bytes (server.MaxIDLength).
	TypeRowID
	// TypeStamp is a hybrid logical clock stamp: up to 100 bytes.
	TypeStamp
	// TypeLabel is short text that has a default: up to 1,024 bytes.
	TypeLabel
	// TypeText is text of any length.
	TypeText
	// TypeJSON is a JSON object (a synced row's column versions).
	TypeJSON
	// TypeInt is a 64-bit integer.
	TypeInt
	// TypeBool is a boolean.
	TypeBool
	// TypeTime is a server time, as [Dialect.Time] stores it.
	TypeTime
	// TypeValue is a column of the app's schema, of [Column.Value]'s kind.
	TypeValue
)

// Column is a column of a table the store creates.
type Column struct {
	// Name is the unquoted column name.
	Name string
	// Type is its abstract type.
	Type Type
	// Null allows NULL; columns are NOT NULL otherwise.
	Null bool
	// Default is an SQL literal every database reads alike ("0", "''"),
	// or "" for no default.
	Default string
	// Value is the app's column, for TypeValue.
	Value *entity.Column
}

// Index is a plain (not unique) index of a table the store creates.
type Index struct {
	// Name is the unquoted index name, unique in the database.
	Name string
	// Columns are the unquoted columns it covers, in order.
	Columns []string
}

// TableDef describes a table the store creates: the bookkeeping tables,
// and for each synced table the table and its staging table.
type TableDef struct {
	// Name is the unquoted table name.
	Name string
	// Columns are its columns in order.
	Columns []Column
	// Key is its primary key.
	Key []string
	// Indexes are its other indexes.
	Indexes []Index
	// Stage marks a staging table. Its key names the latest copy of a
	// row; a dialect whose Stage keeps every copy (PostgreSQL's COPY)
	// spells the key as a plain index on Key and "_seq" instead.
	Stage bool
	// Synced marks a synced table: a column added to it later takes the
	// app column's default in the rows already there.
	Synced bool
}

// ColumnDefs spells t's columns for a CREATE TABLE statement, each as
// "name type NOT NULL DEFAULT x" with typ spelling the type, joined with
// commas.
func ColumnDefs(t TableDef, typ func(Column) string) string {
	defs := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		defs[i] = ColumnDef(c, typ)
	}
	return strings.Join(defs, ", ")
}

// ColumnDef spells one column as ColumnDefs does.
func ColumnDef(c Column, typ func(Column) string) string {
	def := sqlident.Quote(c.Name) + " " + typ(c)
	if !c.Null {
		def += " NOT NULL"
	}
	if c.Default != "" {
		def += " DEFAULT " + c.Default
	}
	return def
}

// ColumnList quotes cols and joins them with commas.
func ColumnList(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = sqlident.Quote(c)
	}
	return strings.Join(q, ", ")
}

// CreateIndex spells CREATE INDEX for ix on table, with ifNotExists
// (which MySQL lacks) when asked.
func CreateIndex(table string, ix Index, ifNotExists bool) string {
	q := "CREATE INDEX "
	if ifNotExists {
		q += "IF NOT EXISTS "
	}
	return fmt.Sprintf("%s%s ON %s (%s)", q, sqlident.Quote(ix.Name), sqlident.Quote(table), ColumnList(ix.Columns))
}

// bookkeeping describes the bookkeeping tables, as step 1 of the
// migrations creates them.
func bookkeeping() []TableDef {
	col := func(name string, t Type) Column { return Column{Name: name, Type: t} }
	null := func(name string, t Type) Column { return Column{Name: name, Type: t, Null: true} }
	return []TableDef{{
		// A device: the user who registered it first, the SHA-256 of its
		// key (wire.HeaderDeviceKey), its schema (an id of
		// _tether_schemas; '' for the server's), how far it has pulled
		// (-1 before its first pull) and when that last moved; with
		// scopes, the keys it holds the rows of (a JSON array; NULL
		// before its first pull), those a pull is bringing it to, and the
		// keys it may hold rows of besides (pages of phases started
		// over, of a snapshot), which the next phases evict, and the keys
		// of scope_held whose rows phases started over may have evicted,
		// which the next phases grant again; revoked marks a device the
		// operator revoked (SetDeviceRevoked), whose requests are refused.
		Name: "_tether_devices",
		Columns: []Column{col("tenant", TypeKey), col("device", TypeID), col("user_name", TypeKey),
			col("created_at", TypeTime), col("seen_at", TypeTime), {Name: "app_schema", Type: TypeID, Default: "''"},
			{Name: "key_hash", Type: TypeID, Default: "''"}, {Name: "pulled", Type: TypeInt, Default: "-1"}, null("moved_at", TypeTime),
			null("scope_held", TypeText), null("scope_pending", TypeText), null("scope_extra", TypeText),
			null("scope_unsure", TypeText), {Name: "revoked", Type: TypeBool, Default: "FALSE"}},
		Key: []string{"tenant", "device"},
		// A registration counts the user's devices; the sweep finds
		// devices unseen for DeviceRetention, and the schemas no device
		// names.
		Indexes: []Index{
			{Name: "_tether_devices__user", Columns: []string{"tenant", "user_name"}},
			{Name: "_tether_devices__seen", Columns: []string{"seen_at"}},
			{Name: "_tether_devices__schema", Columns: []string{"tenant", "app_schema"}},
		},
	}, {
		// The device schemas of a tenant, each stored once however many
		// devices and sessions name it, by the SHA-256 of its JSON.
		Name:    "_tether_schemas",
		Columns: []Column{col("tenant", TypeKey), col("id", TypeID), col("body", TypeText)},
		Key:     []string{"tenant", "id"},
	}, {
		// Each tenant's version counter (Dialect.NextVersion), and the
		// device of its latest commit (for the MySQL store's listener).
		Name:    "_tether_tenants",
		Columns: []Column{col("tenant", TypeKey), col("version", TypeInt), {Name: "device", Type: TypeID, Default: "''"}},
		Key:     []string{"tenant"},
	}, {
		Name: "_tether_sessions",
		Columns: []Column{col("tenant", TypeKey), col("id", TypeID), col("device", TypeID), col("user_name", TypeKey),
			col("created_at", TypeTime), null("touched_at", TypeTime), null("committed_at", TypeTime),
			null("version", TypeInt), null("result", TypeText), {Name: "app_schema", Type: TypeID, Default: "''"}},
		Key: []string{"tenant", "id"},
		// A device's open sessions are counted at every open: without
		// it, every committed session of the tenant (kept for
		// SessionRetention) would be read.
		// The sweep finds expired open sessions (committed_at IS NULL)
		// and committed ones past retention by committed_at alone: without
		// the second index it would read every session of every tenant
		// at each run.
		Indexes: []Index{
			{Name: "_tether_sessions__open", Columns: []string{"tenant", "device", "user_name", "committed_at"}},
			{Name: "_tether_sessions__committed", Columns: []string{"committed_at"}},
			{Name: "_tether_sessions__schema", Columns: []string{"tenant", "app_schema"}},
		},
	}, {
		Name: "_tether_batches",
		Columns: []Column{col("tenant", TypeKey), col("session", TypeID), col("seq", TypeInt), col("tbl", TypeID),
			col("rows", TypeInt), col("bytes", TypeInt), col("attempt", TypeInt)},
		Key: []string{"tenant", "session", "seq"},
	}, {
		Name: "_tether_audit",
		Columns: []Column{col("tenant", TypeKey), col("version", TypeInt), col("tbl", TypeID), col("id", TypeRowID),
			col("deleted", TypeBool), col("user_name", TypeKey), col("device", TypeID), col("session", TypeID), col("at", TypeTime)},
		Key: []string{"tenant", "version", "tbl", "id"},
	}, {
		// The keys of the rows of scoped tables: one entry per row and
		// key, at the version the row (or its keys) last changed; gone
		// marks a key the row left at that version. A pull of a
		// principal reads the entries of its keys after its cursor.
		Name: "_tether_keys",
		Columns: []Column{col("tenant", TypeKey), col("tbl", TypeID), col("id", TypeRowID), col("scope_key", TypeRowID),
			col("version", TypeInt), col("gone", TypeBool)},
		Key: []string{"tenant", "tbl", "id", "scope_key"},
		Indexes: []Index{
			{Name: "_tether_keys__key", Columns: []string{"tenant", "tbl", "scope_key", "version", "id"}},
			{Name: "_tether_keys__version", Columns: []string{"tenant", "version"}},
		},
	}, {
		// The increments of counter columns applied, by id, at the
		// version that applied them, until the tenant's horizon: one
		// pushed again is not added again.
		Name:    "_tether_counted",
		Columns: []Column{col("tenant", TypeKey), col("id", TypeID), col("version", TypeInt)},
		Key:     []string{"tenant", "id"},
		Indexes: []Index{{Name: "_tether_counted__version", Columns: []string{"tenant", "version"}}},
	}, {
		// The writes made in a synced table outside the store, recorded
		// by the capture triggers (see Capturing) until a commit captures
		// them: the latest of each row, and the clock stamp of when it
		// was made.
		Name: "_tether_captured",
		Columns: []Column{col("tenant", TypeKey), col("tbl", TypeID), col("id", TypeRowID), col("deleted", TypeBool),
			col("hlc", TypeStamp)},
		Key: []string{"tenant", "tbl", "id"},
	}, {
		Name:    "_tether_horizons",
		Columns: []Column{col("tenant", TypeKey), col("version", TypeInt)},
		Key:     []string{"tenant"},
	}, {
		// Settings of the store's own, by name: "scopes", the rules the
		// entries of _tether_keys were computed by (see UseScopes).
		Name:    "_tether_settings",
		Columns: []Column{col("name", TypeID), col("value", TypeText)},
		Key:     []string{"name"},
	}}
}

// migrationsTable records the migration steps applied to a database.
var migrationsTable = TableDef{
	Name:    "_tether_migrations",
	Columns: []Column{{Name: "step", Type: TypeInt}, {Name: "at", Type: TypeTime}},
	Key:     []string{"step"},
}

// syncedDef describes synced table t: "_tenant", the app's columns, then
// the bookkeeping columns.
func syncedDef(t *Table) TableDef {
	cols := []Column{{Name: "_tenant", Type: TypeKey}}
	cols = append(cols, appColumns(t)...)
	// The bookkeeping columns have defaults, so that a back office's
	// INSERT names only the app's columns (see Capturing).
	cols = append(cols,
		Column{Name: "_version", Type: TypeInt, Default: "0"},
		Column{Name: "_deleted", Type: TypeBool, Default: "FALSE"},
		Column{Name: "_hlc", Type: TypeStamp, Default: "''"},
		Column{Name: "_modified_by", Type: TypeKey, Default: "''"},
		Column{Name: "_origin", Type: TypeID, Default: "''"},
		Column{Name: "_session", Type: TypeID, Default: "''"},
		Column{Name: "_colvers", Type: TypeJSON, Default: "'{}'"},
		Column{Name: "_reason", Type: TypeLabel, Default: "''"},
		Column{Name: "_notify", Type: TypeID, Default: "''"},
		Column{Name: "_pushed", Type: TypeInt, Default: "0"})
	def := TableDef{Name: t.schema.Name, Columns: cols, Key: []string{"_tenant", "id"}, Synced: true,
		// A pull reads a tenant's rows in commit order.
		Indexes: []Index{{Name: t.schema.Name + "__changes", Columns: []string{"_tenant", "_version", "id"}}}}
	// The reference rules of a commit look children up by their parent.
	for _, c := range t.schema.Columns {
		if c.Ref != "" {
			def.Indexes = append(def.Indexes, Index{Name: t.schema.Name + "__ref_" + c.Name, Columns: []string{"_tenant", c.Name}})
		}
	}
	return def
}

// stageDef describes the staging table of t, in the order of StageCols.
func stageDef(t *Table) TableDef {
	cols := []Column{
		{Name: "_tenant", Type: TypeKey},
		{Name: "_session", Type: TypeID},
		{Name: "_seq", Type: TypeInt},
		{Name: "_base", Type: TypeInt},
		{Name: "_deleted", Type: TypeBool},
		{Name: "_hlc", Type: TypeStamp},
		{Name: "_changed", Type: TypeText},
		{Name: "_present", Type: TypeLabel, Default: "''"},
		{Name: "_exact", Type: TypeInt},
		{Name: "_increments", Type: TypeText, Null: true}, // the row's wire.Increments, as JSON
	}
	return TableDef{Name: t.StageName, Columns: append(cols, appColumns(t)...), Key: []string{"_tenant", "_session", "id"}, Stage: true,
		// Batches are replaced and dropped by number.
		Indexes: []Index{{Name: t.StageName + "__seq", Columns: []string{"_tenant", "_session", "_seq"}}}}
}

// appColumns are the columns of t's schema: id, then the others, which
// may be NULL.
func appColumns(t *Table) []Column {
	cols := []Column{{Name: "id", Type: TypeRowID}}
	for i := range t.schema.Columns[1:] {
		cols = append(cols, Column{Name: t.schema.Columns[i+1].Name, Type: TypeValue, Null: true, Value: &t.schema.Columns[i+1]})
	}
	return cols
}
