package localdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// Keys of _tether_state, the store's small persisted values.
const (
	stateDevice = "device"
	// stateDeviceKey is the device's secret (see Syncer.DeviceKey), made
	// with the device id.
	stateDeviceKey = "device_key"
	stateClock     = "clock"
	// stateRefill is the latest version a device held when its app
	// version added tables or columns: pulled rows up to it are rewritten
	// even at the version the device holds, to fill the new columns.
	stateRefill      = "refill"
	stateTenant      = "tenant"
	stateRegistered  = "registered"
	stateCursor      = "pull_cursor"
	statePushSession = "push_session"
	statePushSeq     = "push_seq"
	statePushPos     = "push_pos"
	statePushFinal   = "push_final"
	statePushAttempt = "push_attempt"
	// stateRebuild holds the snapshot position of a rebuild under way ("-"
	// at its start); absent when none is.
	stateRebuild = "rebuild"
)

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// getState returns the value stored under key, or "".
func getState(ctx context.Context, q execer, key string) (string, error) {
	var v string
	err := q.QueryRowContext(ctx, `SELECT value FROM _tether_state WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read state %s: %w", key, err)
	}
	return v, nil
}

// setState stores value under key. A value stored already is left as it
// is: no page to write back at commit.
func setState(ctx context.Context, q execer, key, value string) error {
	return setStates(ctx, q, key, value)
}

// setStates stores each value of kv (key, value, key, value, ...) under
// its key, in one statement: the push state's keys are written together.
func setStates(ctx context.Context, q execer, kv ...string) error {
	if len(kv) == 0 || len(kv)%2 != 0 {
		return fmt.Errorf("write state: %d strings, want key and value pairs", len(kv))
	}
	args := make([]any, len(kv))
	for i, v := range kv {
		args[i] = v
	}
	values := strings.Repeat(", (?, ?)", len(kv)/2)[2:]
	_, err := q.ExecContext(ctx, `INSERT INTO _tether_state (key, value) VALUES `+values+`
		ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE value IS NOT excluded.value`, args...)
	if err != nil {
		return fmt.Errorf("write state %s: %w", kv[0], err)
	}
	return nil
}

// Tenant returns the tenant the database was bound to by its first
// successful sync, or "".
func (s *Syncer) Tenant(ctx context.Context) (string, error) {
	db := s.db
	if err := db.checkOpen("Tenant"); err != nil {
		return "", err
	}
	t, err := getState(ctx, db.sql, stateTenant)
	if err != nil {
		return "", fmt.Errorf("localdb: %w", err)
	}
	return t, nil
}

// BindTenant binds the database to tenant on first use, and afterwards
// returns an error wrapping ErrOtherTenant for any other tenant: a
// database never mixes the rows of two tenants.
func (s *Syncer) BindTenant(ctx context.Context, tenant string) error {
	db := s.db
	if err := db.checkOpen("BindTenant"); err != nil {
		return err
	}
	return db.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := getState(ctx, tx, stateTenant)
		if err != nil {
			return err
		}
		switch cur {
		case tenant:
			return nil
		case "":
			return setState(ctx, tx, stateTenant, tenant)
		}
		return fmt.Errorf("%w: it holds tenant %q, and the credentials are for %q", ErrOtherTenant, cur, tenant)
	})
}

// Registration returns the mark SetRegistration stored, or "".
func (s *Syncer) Registration(ctx context.Context) (string, error) {
	db := s.db
	if err := db.checkOpen("Registration"); err != nil {
		return "", err
	}
	m, err := getState(ctx, db.sql, stateRegistered)
	if err != nil {
		return "", fmt.Errorf("localdb: %w", err)
	}
	return m, nil
}

// Registered returns, in one read, the tenant the database is bound to
// (as Tenant) and the mark SetRegistration stored (as Registration): what
// a sync checks before it starts.
func (s *Syncer) Registered(ctx context.Context) (tenant, mark string, err error) {
	db := s.db
	if err := db.checkOpen("Registered"); err != nil {
		return "", "", err
	}
	rows, err := db.sql.QueryContext(ctx, `SELECT key, value FROM _tether_state WHERE key IN (?, ?)`, stateTenant, stateRegistered)
	if err != nil {
		return "", "", fmt.Errorf("localdb: read registration: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return "", "", fmt.Errorf("localdb: read registration: %w", err)
		}
		if k == stateTenant {
			tenant = v
		} else {
			mark = v
		}
	}
	if err := rows.Err(); err != nil {
		return "", "", fmt.Errorf("localdb: read registration: %w", err)
	}
	return tenant, mark, nil
}

// SetRegistration stores an opaque mark of what the device registered with
// the server (the coordinator's is a hash of the schema sent): while it is
// the same, the device need not register again. "" forgets it.
func (s *Syncer) SetRegistration(ctx context.Context, mark string) error {
	db := s.db
	if err := db.checkOpen("SetRegistration"); err != nil {
		return err
	}
	if err := setState(ctx, db.sql, stateRegistered, mark); err != nil {
		return fmt.Errorf("localdb: %w", err)
	}
	return nil
}

// getOrSetState returns the value stored under key, first storing newValue()
// there when there is none (""): the get-or-create of the values a
// database makes once, such as its device id.
func getOrSetState(ctx context.Context, q execer, key string, newValue func() string) (string, error) {
	v, err := getState(ctx, q, key)
	if err != nil || v != "" {
		return v, err
	}
	v = newValue()
	if err := setState(ctx, q, key, v); err != nil {
		return "", err
	}
	return v, nil
}

// badState is the error for a stored value of key that does not parse.
func badState(key, value string, err error) error {
	return fmt.Errorf("stored state %s is %q: %w", key, value, err)
}
