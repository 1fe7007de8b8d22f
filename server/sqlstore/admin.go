package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tethersync/tether/entity"
)

// The reads of an operator's tool (tether-admin, server/admin): what the
// bookkeeping tables say about a tenant's devices, sessions, schemas and
// scope keys. They only read, through the read pool, and need none of the
// app's schema: a store opened with an empty schema answers them.

// ErrUnknownTenant is returned by the admin reads for a tenant that has
// neither committed nor registered a device.
var ErrUnknownTenant = errors.New("unknown tenant")

// DeviceInfo is a registered device, as [Store.Devices] reads it.
type DeviceInfo struct {
	// Device is the device id.
	Device string `json:"device"`
	// User is the user who registered it first.
	User string `json:"user"`
	// Created is when it registered first.
	Created time.Time `json:"created"`
	// Seen is when it was last seen: a registration, a push or a pull.
	Seen time.Time `json:"seen"`
	// Position is the version of the cursor it last sent on a pull: the
	// server knows it holds every version up to it. -1 before its first
	// pull. A pull's last page moves it at the next pull.
	Position int64 `json:"position"`
	// Lag is the tenant's latest version minus Position (minus 0 before
	// the first pull): how many versions it has not proven it holds.
	Lag int64 `json:"lag"`
	// Moved is when Position last moved; nil before its first pull.
	Moved *time.Time `json:"moved,omitempty"`
	// Schema is the id of the app schema it registered with ([Store.Schemas]),
	// "" for the server's.
	Schema string `json:"schema"`
	// Keys are the scope keys it holds the rows of; nil when it holds no
	// known set (scopes off, or before its first pull under scopes).
	Keys []string `json:"keys,omitempty"`
	// Revoked reports that the operator revoked it (SetDeviceRevoked).
	Revoked bool `json:"revoked"`
}

// Latest returns the tenant's latest version. It returns an error
// wrapping ErrUnknownTenant when the tenant has neither a version nor a
// registered device.
func (s *Store) Latest(ctx context.Context, tenant string) (int64, error) {
	var v, n int64
	err := s.r.QueryRowContext(ctx, s.q(`SELECT coalesce((SELECT version FROM _tether_tenants WHERE tenant = ?), -1),
		(SELECT count(*) FROM _tether_devices WHERE tenant = ?)`), tenant, tenant).Scan(&v, &n)
	switch {
	case err != nil:
		return 0, fmt.Errorf("tenant %s: %w", tenant, err)
	case v < 0 && n == 0:
		return 0, fmt.Errorf("tenant %q: no device registered, no commit: %w", tenant, ErrUnknownTenant)
	}
	return max(v, 0), nil
}

// Devices returns the registered devices of tenant, by user then device
// id, each with its pull position and lag. It returns an error wrapping
// ErrUnknownTenant for an unknown tenant. Safe for concurrent use.
func (s *Store) Devices(ctx context.Context, tenant string) ([]DeviceInfo, error) {
	latest, err := s.Latest(ctx, tenant)
	if err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT device, user_name, created_at, seen_at, pulled, moved_at, app_schema, scope_held, revoked
		FROM _tether_devices WHERE tenant = ? ORDER BY user_name, device`), tenant)
	if err != nil {
		return nil, fmt.Errorf("devices of %s: %w", tenant, err)
	}
	defer rows.Close()
	var out []DeviceInfo
	for rows.Next() {
		var d DeviceInfo
		var created, seen, moved any
		var held sql.NullString
		var revoked any
		if err := rows.Scan(&d.Device, &d.User, &created, &seen, &d.Position, &moved, &d.Schema, &held, &revoked); err != nil {
			return nil, fmt.Errorf("devices of %s: %w", tenant, err)
		}
		if err := scanTimes(&d.Created, created, &d.Seen, seen); err != nil {
			return nil, fmt.Errorf("device %s: %w", d.Device, err)
		}
		if moved != nil {
			t, err := timeOf(moved)
			if err != nil {
				return nil, fmt.Errorf("device %s: %w", d.Device, err)
			}
			d.Moved = &t
		}
		if d.Keys, err = parseKeyList(held); err != nil {
			return nil, fmt.Errorf("device %s: %w", d.Device, err)
		}
		d.Lag = latest - max(d.Position, 0)
		d.Revoked = truth(revoked)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("devices of %s: %w", tenant, err)
	}
	return out, nil
}

// scanTimes converts stored server times into the pairs' destinations.
func scanTimes(pairs ...any) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		t, err := timeOf(pairs[i+1])
		if err != nil {
			return err
		}
		*pairs[i].(*time.Time) = t
	}
	return nil
}

// SessionInfo is an open (uncommitted) push session, as
// [Store.OpenSessions] reads it.
type SessionInfo struct {
	// ID is the session id.
	ID string `json:"id"`
	// Device and User opened it.
	Device string `json:"device"`
	User   string `json:"user"`
	// Opened is when it was opened.
	Opened time.Time `json:"opened"`
	// Active is when it last received a batch (Opened before the first):
	// it expires SessionIdle after.
	Active time.Time `json:"active"`
	// Batches, Rows and Bytes are what it staged so far.
	Batches int64 `json:"batches"`
	Rows    int64 `json:"rows"`
	Bytes   int64 `json:"bytes"`
}

// OpenSessions returns the open push sessions of tenant, oldest first. It
// returns an error wrapping ErrUnknownTenant for an unknown tenant. Safe
// for concurrent use.
func (s *Store) OpenSessions(ctx context.Context, tenant string) ([]SessionInfo, error) {
	if _, err := s.Latest(ctx, tenant); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT s.id, s.device, s.user_name, s.created_at, coalesce(s.touched_at, s.created_at),
		count(b.seq), coalesce(sum(b."rows"), 0), coalesce(sum(b.bytes), 0)
		FROM _tether_sessions s LEFT JOIN _tether_batches b ON b.tenant = s.tenant AND b.session = s.id
		WHERE s.tenant = ? AND s.committed_at IS NULL
		GROUP BY s.id, s.device, s.user_name, s.created_at, s.touched_at ORDER BY s.created_at, s.id`), tenant)
	if err != nil {
		return nil, fmt.Errorf("sessions of %s: %w", tenant, err)
	}
	defer rows.Close()
	var out []SessionInfo
	for rows.Next() {
		var si SessionInfo
		var opened, active any
		if err := rows.Scan(&si.ID, &si.Device, &si.User, &opened, &active, &si.Batches, &si.Rows, &si.Bytes); err != nil {
			return nil, fmt.Errorf("sessions of %s: %w", tenant, err)
		}
		if err := scanTimes(&si.Opened, opened, &si.Active, active); err != nil {
			return nil, fmt.Errorf("session %s: %w", si.ID, err)
		}
		out = append(out, si)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sessions of %s: %w", tenant, err)
	}
	return out, nil
}

// SchemaInfo is an app schema a tenant's devices registered with, as
// [Store.Schemas] reads it.
type SchemaInfo struct {
	// ID is the SHA-256 of its JSON, "" for the server's own (a device
	// that sent none).
	ID string `json:"id"`
	// Devices is how many of the tenant's devices registered with it.
	Devices int `json:"devices"`
	// Schema is the schema; nil for ID "" (see [Store.ServerSchema]) or
	// when it is no longer stored.
	Schema *entity.Schema `json:"schema,omitempty"`
}

// Schemas returns the app schemas the devices of tenant registered with,
// by number of devices, most first. It returns an error wrapping
// ErrUnknownTenant for an unknown tenant. Safe for concurrent use.
func (s *Store) Schemas(ctx context.Context, tenant string) ([]SchemaInfo, error) {
	if _, err := s.Latest(ctx, tenant); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT d.app_schema, count(*), max(coalesce(sc.body, ''))
		FROM _tether_devices d LEFT JOIN _tether_schemas sc ON sc.tenant = d.tenant AND sc.id = d.app_schema
		WHERE d.tenant = ? GROUP BY d.app_schema ORDER BY count(*) DESC, d.app_schema`), tenant)
	if err != nil {
		return nil, fmt.Errorf("schemas of %s: %w", tenant, err)
	}
	defer rows.Close()
	var out []SchemaInfo
	for rows.Next() {
		var si SchemaInfo
		var body string
		if err := rows.Scan(&si.ID, &si.Devices, &body); err != nil {
			return nil, fmt.Errorf("schemas of %s: %w", tenant, err)
		}
		if body != "" {
			si.Schema = new(entity.Schema)
			if err := json.Unmarshal([]byte(body), si.Schema); err != nil {
				return nil, fmt.Errorf("schema %s: %w", si.ID, err)
			}
		}
		out = append(out, si)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("schemas of %s: %w", tenant, err)
	}
	return out, nil
}

// ServerTable is a synced table of the server database and its columns,
// as [Store.ServerSchema] reads them.
type ServerTable struct {
	// Name is the table's name.
	Name string `json:"name"`
	// Columns are its app columns, by name; tether's own columns
	// (_tenant, _version, …) are left out.
	Columns []string `json:"columns"`
}

// ServerSchema returns the synced tables the server database holds, by
// name: the tables that have a staging table, whatever schema the store
// was opened with. Safe for concurrent use.
func (s *Store) ServerSchema(ctx context.Context) ([]ServerTable, error) {
	var list string
	switch s.d.Name() {
	case "sqlite":
		list = `SELECT name FROM sqlite_master WHERE type = 'table'`
	case "mysql":
		list = `SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()`
	default:
		list = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`
	}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("server schema: %w", err)
	}
	defer tx.Rollback()
	names, err := s.strings(ctx, tx, list)
	if err != nil {
		return nil, fmt.Errorf("server schema: %w", err)
	}
	have := map[string]bool{}
	for _, n := range names {
		have[n] = true
	}
	var out []ServerTable
	for _, n := range names {
		name, ok := strings.CutPrefix(n, "_tether_stage_")
		if !ok || !have[name] {
			continue
		}
		cols, err := s.d.Columns(ctx, tx, name)
		if err != nil {
			return nil, fmt.Errorf("server schema: table %s: %w", name, err)
		}
		st := ServerTable{Name: name}
		for c := range cols {
			if !strings.HasPrefix(c, "_") {
				st.Columns = append(st.Columns, c)
			}
		}
		slices.Sort(st.Columns)
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b ServerTable) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// UserKeys is what [Store.UserKeys] reads: the scope keys a user's devices
// hold and the rows of scoped tables each key brings.
type UserKeys struct {
	// Scopes reports whether the server runs with scopes: it recorded
	// the rules the keys of rows were computed by.
	Scopes bool `json:"scopes"`
	// ScopedTables are the tables of the tenant whose rows carry keys
	// (the rows of every other table go to every device of the tenant).
	ScopedTables []string `json:"scoped_tables"`
	// Devices are the user's devices and the keys each holds.
	Devices []DeviceKeys `json:"devices"`
	// Keys are the keys any of the devices holds, sorted.
	Keys []string `json:"keys"`
	// Counts are the rows of each scoped table each key of Keys brings,
	// by table then key; a row with several keys counts under each.
	Counts []KeyCount `json:"counts"`
	// Tables are the rows of each scoped table the keys bring together,
	// each row once.
	Tables []KeyCount `json:"tables"`
}

// DeviceKeys is a device and the keys it holds.
type DeviceKeys struct {
	// Device is the device id.
	Device string `json:"device"`
	// Keys are the keys it holds the rows of; nil when unknown (before
	// its first pull under scopes).
	Keys []string `json:"keys"`
	// Known reports whether Keys is known.
	Known bool `json:"known"`
}

// KeyCount is a number of live rows of a scoped table with a key ("" in
// UserKeys.Tables, which counts each row once).
type KeyCount struct {
	Table string `json:"table"`
	Key   string `json:"key,omitempty"`
	Rows  int64  `json:"rows"`
}

// UserKeys returns the scope keys the devices of user hold in tenant, and
// the rows of the scoped tables those keys bring. It returns an error
// wrapping ErrUnknownTenant for an unknown tenant. Safe for concurrent
// use.
func (s *Store) UserKeys(ctx context.Context, tenant, user string) (UserKeys, error) {
	var uk UserKeys
	if _, err := s.Latest(ctx, tenant); err != nil {
		return uk, err
	}
	tx, err := s.r.BeginTx(ctx, s.d.ReadOptions())
	if err != nil {
		return uk, fmt.Errorf("keys of %s: %w", user, err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, s.q(`SELECT count(*) FROM _tether_settings WHERE name = ?`), "scopes").Scan(&n); err != nil {
		return uk, fmt.Errorf("keys of %s: %w", user, err)
	}
	uk.Scopes = n > 0
	if uk.ScopedTables, err = s.strings(ctx, tx, `SELECT DISTINCT tbl FROM _tether_keys WHERE tenant = ? ORDER BY tbl`, tenant); err != nil {
		return uk, fmt.Errorf("keys of %s: %w", user, err)
	}
	if uk.Devices, err = s.deviceKeys(ctx, tx, tenant, user); err != nil {
		return uk, fmt.Errorf("keys of %s: %w", user, err)
	}
	uk.Keys = []string{}
	for _, d := range uk.Devices {
		uk.Keys = append(uk.Keys, d.Keys...)
	}
	slices.Sort(uk.Keys)
	uk.Keys = slices.Compact(uk.Keys)
	if uk.Counts, err = s.keyCounts(ctx, tx, tenant, uk.Keys, `tbl, scope_key, count(*)`, `GROUP BY tbl, scope_key ORDER BY tbl, scope_key`); err != nil {
		return uk, fmt.Errorf("keys of %s: %w", user, err)
	}
	if uk.Tables, err = s.keyCounts(ctx, tx, tenant, uk.Keys, `tbl, '', count(DISTINCT id)`, `GROUP BY tbl ORDER BY tbl`); err != nil {
		return uk, fmt.Errorf("keys of %s: %w", user, err)
	}
	return uk, nil
}

// deviceKeys reads the keys each device of user holds, in tx.
func (s *Store) deviceKeys(ctx context.Context, tx *sql.Tx, tenant, user string) ([]DeviceKeys, error) {
	rows, err := tx.QueryContext(ctx, s.q(`SELECT device, scope_held FROM _tether_devices WHERE tenant = ? AND user_name = ? ORDER BY device`), tenant, user)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []DeviceKeys{}
	for rows.Next() {
		var d DeviceKeys
		var held sql.NullString
		if err := rows.Scan(&d.Device, &held); err != nil {
			return nil, err
		}
		if d.Keys, err = parseKeyList(held); err != nil {
			return nil, err
		}
		d.Known = held.Valid
		out = append(out, d)
	}
	return out, rows.Err()
}

// keyCounts counts the live entries of _tether_keys of tenant with one of
// keys, selecting cols (table, key, count) with the tail clause.
func (s *Store) keyCounts(ctx context.Context, tx *sql.Tx, tenant string, keys []string, cols, tail string) ([]KeyCount, error) {
	in, args := inList("scope_key", keys)
	rows, err := tx.QueryContext(ctx, s.q(`SELECT `+cols+` FROM _tether_keys WHERE tenant = ? AND NOT gone AND `+in+` `+tail),
		append([]any{tenant}, args...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []KeyCount{}
	for rows.Next() {
		var c KeyCount
		if err := rows.Scan(&c.Table, &c.Key, &c.Rows); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
