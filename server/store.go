package server

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/wire"
)

// Store is where the server keeps synced rows, devices and push sessions.
// Every method is scoped to the principal's tenant. Implementations must be
// safe for concurrent use.
type Store interface {
	// Schema returns the tables the store holds, in priority order.
	Schema() entity.Schema
	// RegisterDevice binds a device id to the principal's tenant. It
	// returns wire.ErrForbidden when the device belongs to another tenant.
	RegisterDevice(ctx context.Context, p Principal, device string) error
	// OpenSession opens a push session for a registered device.
	OpenSession(ctx context.Context, p Principal, device string) (string, error)
	// StageBatch stores batch seq of an open session, replacing an earlier
	// batch with the same seq. Rows are validated and canonical, all of one
	// table. It returns wire.ErrNotFound for an unknown session and
	// wire.ErrConflict for a committed one.
	StageBatch(ctx context.Context, p Principal, device, session string, seq int, rows []wire.Row) error
	// Commit applies every staged batch of a session in one transaction,
	// tables in priority order, resolving conflicts with resolve. Committing
	// a committed session returns the first commit's answer.
	Commit(ctx context.Context, p Principal, device, session string, resolve Resolver) (wire.Commit, error)
	// Changes returns up to limit rows after cursor in commit order, the
	// cursor after them, and whether more remain.
	Changes(ctx context.Context, p Principal, after Cursor, limit int) ([]wire.Row, Cursor, bool, error)
	// Close releases the store.
	Close() error
}

// Cursor is a position in the commit order of a tenant's rows: rows are
// ordered by server version, then table priority, then id.
type Cursor struct {
	Version int64
	Table   int // index of the table in priority order
	ID      string
}

// String encodes the cursor as the opaque text clients hold.
func (c Cursor) String() string {
	if c == (Cursor{}) {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("1:%d:%d:%s", c.Version, c.Table, c.ID)))
}

// ParseCursor decodes a cursor made by Cursor.String. The empty string is
// the start. It returns an error wrapping wire.ErrBadRequest for anything else.
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	bad := fmt.Errorf("malformed cursor %q: %w", s, wire.ErrBadRequest)
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, bad
	}
	parts := strings.SplitN(string(raw), ":", 4)
	if len(parts) != 4 || parts[0] != "1" {
		return Cursor{}, bad
	}
	var c Cursor
	if c.Version, err = strconv.ParseInt(parts[1], 10, 64); err != nil || c.Version < 0 {
		return Cursor{}, bad
	}
	if c.Table, err = strconv.Atoi(parts[2]); err != nil || c.Table < 0 {
		return Cursor{}, bad
	}
	c.ID = parts[3]
	return c, nil
}

// less reports whether position a comes before b in commit order.
func (a Cursor) less(b Cursor) bool {
	if a.Version != b.Version {
		return a.Version < b.Version
	}
	if a.Table != b.Table {
		return a.Table < b.Table
	}
	return a.ID < b.ID
}
