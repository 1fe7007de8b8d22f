package server

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/wire"
)

// Store is where the server keeps synced rows, devices and push sessions.
// Every method is scoped to the principal's tenant. Implementations must be
// safe for concurrent use.
type Store interface {
	// Schema returns the tables the store holds, in priority order.
	Schema() entity.Schema
	// RegisterDevice registers a device in the principal's tenant, or
	// registers it again (a new app version's schema; another user of a
	// shared device), which needs the key the device registered with
	// first: another key is wire.ErrDeviceKey. A device new to the tenant
	// whose user already holds lim.MaxUserDevices registered devices is
	// wire.ErrDeviceLimit, and a revoked device (the SQL stores'
	// SetDeviceRevoked) wire.ErrDeviceRevoked. Sessions opened later
	// write only the columns of the schema the device had when they
	// opened.
	RegisterDevice(ctx context.Context, p Principal, reg Registration, lim Limits) error
	// CheckDevice returns nil when device is registered in the principal's
	// tenant under the key whose SHA-256 is keyHash (hex),
	// wire.ErrDeviceUnknown when it is not registered, and
	// wire.ErrDeviceKey when it is, under another key, and
	// wire.ErrDeviceRevoked when it is revoked: every request naming a
	// device goes through it (or reads the device in its own
	// transaction: opening a session of a revoked device is refused
	// alike).
	CheckDevice(ctx context.Context, p Principal, device, keyHash string) error
	// LatestVersion returns the version of tenant's latest commit (0 before
	// the first).
	LatestVersion(ctx context.Context, tenant string) (int64, error)
	// OpenSession opens a push session for a registered device, with id
	// session, or a new id when session is "". Opening an open session of
	// the same device again returns it (a retry after a lost answer); an id
	// in use otherwise is wire.ErrConflict. It first discards the device's
	// sessions idle for longer than lim.SessionIdle, and returns
	// wire.ErrConflict when the device already has lim.MaxOpenSessions
	// uncommitted sessions.
	OpenSession(ctx context.Context, p Principal, device, session string, lim Limits) (string, error)
	// Push stores batch seq of a session, replacing an earlier batch
	// with the same seq; rows are validated and canonical, all of one
	// table. It opens the session first when o.Open (as OpenSession
	// would, with the session id the device chose), and commits it after
	// when o.Commit is set (as Commit would, with o.Commit as the last
	// batch; the answer is then the commit's, else nil), all in one
	// transaction: a push that fits in one batch is one request and one
	// transaction.
	//
	// It returns wire.ErrNotFound for an unknown session or one idle for
	// longer than o.Limits.SessionIdle (whose staged rows it discards),
	// wire.ErrConflict for a committed one (but see below) or a batch of
	// an earlier attempt, wire.ErrSessionFull past
	// o.Limits.MaxSessionRows or MaxSessionBytes, and
	// wire.ErrRateLimited past o.Limits.MaxTenantStagedBytes.
	//
	// A request that commits may be delivered twice: when the session is
	// committed already, Push returns the first commit's answer if it was
	// committed by the same last batch, and wire.ErrConflict otherwise.
	Push(ctx context.Context, p Principal, device, session string, seq int, rows []wire.Row, o PushOptions) (*wire.Commit, error)
	// Abandon drops an open push session of the device and everything
	// it staged, as if it had expired. Abandoning a session that is not
	// open (never opened, expired, abandoned already, or another device's)
	// does nothing and returns nil, so that a retry after a lost answer
	// succeeds; a committed session is wire.ErrConflict, and one opened by
	// another user of the device wire.ErrForbidden.
	Abandon(ctx context.Context, p Principal, device, session string) error
	// Commit applies every staged batch of a session in one transaction,
	// tables in priority order, resolving conflicts with resolve, and
	// records each applied row in the audit log. Committing a committed
	// session returns the first commit's answer; an expired one is
	// wire.ErrNotFound.
	//
	// settle, when not nil, is the batch a device sent with
	// wire.BatchCommit and got no answer for (wire.CommitRequest): the
	// answer's Settled says whether that batch committed the session (as
	// recorded by Push); when the session is not committed, its batches
	// from settle.Seq on are dropped (they are an earlier attempt's: Push
	// stages a committing batch only with its commit) before it is.
	Commit(ctx context.Context, p Principal, device, session string, resolve Resolver, lim Limits, settle *LastBatch) (wire.Commit, error)
	// Changes returns up to limit rows after cursor in commit order, the
	// cursor after them, and whether more remain. A cursor before the
	// tenant's purge horizon, or past its latest version (a server
	// restored from an older backup, or a forged cursor), is
	// wire.ErrHistoryPurged, and records nothing. The rows' sizes (see
	// wire.Row.Size) add up to at most maxBytes, but the first row is always
	// returned whatever its size.
	//
	// With scopes (UseScopes), the pull must name its device: the rows
	// come only from the tables it may see all of and the scoped rows that
	// share a key with the principal; a row that left every key the
	// principal holds comes as a row with Evict. When the principal's keys
	// differ from those the device last pulled with, pages first remove
	// the rows of the keys it lost (Evict rows), then bring every live row
	// of the keys it gained (also those below its cursor, but for rows it
	// holds through another key): the cursors of those pages say where the
	// device is in that.
	//
	// A page ends between two versions when it can: it stops before the
	// rows of a version it cannot hold whole, unless that version is its
	// first, when the cursor returned is Partial.
	//
	// Rows of echo.Device's push sessions in echo.Sessions that the server
	// kept exactly as pushed (no conflict settled against them, no merge,
	// no new clock stamp, no reference rule) are passed over: the device
	// has them. The cursor moves past them all the same (a store that
	// leaves them out of its reads returns, on the last page, more false,
	// a cursor past every version it could see).
	Changes(ctx context.Context, p Principal, after Cursor, limit, maxBytes int, echo Echo) ([]wire.Row, Cursor, bool, error)
	// Audit returns up to limit entries of tenant's audit log with
	// versions above after, oldest first.
	Audit(ctx context.Context, tenant string, after int64, limit int) ([]AuditEntry, error)
	// Digest returns the entity.Digest of tenant's live rows of table, in
	// id byte order, over the given columns (id first) or, when columns is
	// nil, all of them.
	Digest(ctx context.Context, p Principal, table string, columns []string) (wire.TableDigest, error)
	// Snapshot returns up to limit live rows (and at most maxBytes of
	// them, but one) after the position after, for a device that must
	// rebuild (wire.Snapshot); the zero position starts a snapshot at the
	// tenant's latest version. device, when not "", is the rebuilding
	// device, proven by its key: the first page records its position at
	// the snapshot's version, so that tombstones after it stay until the
	// device has pulled from there.
	Snapshot(ctx context.Context, p Principal, after Cursor, limit, maxBytes int, device string) (wire.Snapshot, error)
	// Sweep discards what has expired: the uncommitted sessions idle for
	// longer than lim.SessionIdle and their staged rows, tombstones every
	// active device has pulled past (lim.DeviceActivity), committed
	// sessions older than lim.SessionRetention, audit entries older than
	// lim.AuditRetention, devices unseen for lim.DeviceRetention and the
	// device schemas no device or open session names. It does at most max rows' worth of work of
	// each kind and returns how many it discarded. Server runs it every
	// Options.SweepInterval.
	Sweep(ctx context.Context, lim Limits, max int) (int, error)
	// Subscribe returns a channel that receives an event after each commit
	// of tenant's, until ctx ends. Events may be coalesced: a receiver
	// that falls behind gets the latest. The SQLite store tells
	// subscribers within its process; the PostgreSQL store across every
	// process on the database (LISTEN/NOTIFY); the MySQL store across
	// processes too (by polling the tenants' versions).
	Subscribe(ctx context.Context, tenant string) (<-chan wire.Event, error)
	// UseScopes makes the store keep and apply sc (nil: none), which
	// Options.Check has accepted against Schema, and authorize (nil:
	// none), from now on; server.New calls it once, before serving. Rows
	// written while the store had no scopes, or other rules, get their
	// keys then, and every device rebuilds from a snapshot. With
	// scopes, the store keeps each scoped row's keys (computed at each
	// commit), Changes, Snapshot and Digest return only the rows the
	// principal may see, Changes removes from a device the rows its
	// principal may no longer see and brings those it newly may (see
	// Changes), and a commit refuses, row by row, what the principal may
	// not write (a conflict of strategy wire.StrategyForbidden), unless
	// its context is Trusted.
	UseScopes(sc *Scopes, authorize Authorizer) error
	// Visible reports whether rows the principal may see changed in the
	// tenant's versions after..upto (after excluded): a live event is
	// sent to a scoped principal's stream only then.
	Visible(ctx context.Context, p Principal, after, upto int64) (bool, error)
	// Close releases the store.
	Close() error
}

// Registration is a device's registration (Store.RegisterDevice).
type Registration struct {
	// Device is the device id.
	Device string
	// KeyHash is the SHA-256, in hex, of the device's key
	// (wire.HeaderDeviceKey).
	KeyHash string
	// Schema is the device's schema, which deviceSchema has accepted
	// and reduced to the server's tables and columns it names; nil for
	// the server's own.
	Schema *entity.Schema
}

// PushOptions are the options of Store.Push.
type PushOptions struct {
	// Open opens the session first, if it is not open yet.
	Open bool
	// Attempt numbers the device's attempts at the session (see
	// wire.BatchAttempt): a batch from an earlier attempt than the copy
	// staged under its number is refused with wire.ErrConflict, and
	// changes nothing.
	Attempt int64
	// Base is, for a batch whose Attempt begins a newer run of sends than
	// the session's (see wire.BatchBase), the number of batches before it
	// the device holds as acknowledged: what earlier runs staged from Base
	// on is dropped first. A batch of an earlier run than the session's
	// newest is refused with wire.ErrConflict and drops nothing. At most
	// seq; the HTTP server passes seq when the device names none.
	Base int
	// Commit, when set, commits the session after the batch, which is its
	// last, with Resolve deciding conflicts.
	Commit  *LastBatch
	Resolve Resolver
	Limits  Limits
}

// LastBatch names the batch whose request commits its session: its number
// and the digest of its body.
type LastBatch = wire.LastBatch

// AuditEntry records one applied change: which row, who pushed it, when
// (server time), from which device and in which session.
type AuditEntry struct {
	Version int64     `json:"version"`
	Table   string    `json:"table"`
	ID      string    `json:"id"`
	Deleted bool      `json:"deleted"`
	User    string    `json:"user"`
	Device  string    `json:"device"`
	Session string    `json:"session"`
	At      time.Time `json:"at"`
	// External marks a write made directly in the server database and
	// captured (Options.CaptureExternalWrites): Device is ExternalDevice.
	External bool `json:"external,omitempty"`
}

// Cursor is a position in the commit order of a tenant's rows: rows are
// ordered by server version, then table priority, then id. With scopes, a
// cursor may also be in a phase that changes which keys a device holds
// (see Store.Changes): Version, Table and ID are then where the device's
// pull stood when the phase began, and At where the phase is.
type Cursor struct {
	Version int64
	Table   int // index of the table in priority order
	ID      string

	// Held identifies (KeySetID) the scope keys whose rows the device held
	// when the server gave it the cursor: a cursor of a device's database
	// restored from a backup, or copied, names other keys than the server
	// recorded for the device, and the device rebuilds. "" without scopes.
	Held string
	// Phase is PhaseNone, or the phase the pull is in.
	Phase Phase
	// Keys identifies (KeySetID) the keys the phase brings the device to.
	Keys string
	// At is the position in the phase: a table index and a row id.
	At PhaseAt

	// Partial, on the cursor Changes returns, reports that the page ends
	// inside a version: rows of the version the cursor stands in come
	// after it (one session larger than a page). It is not part of the
	// cursor's text.
	Partial bool
}

// Phase is a phase of a pull that changes the keys a device holds.
type Phase byte

// The phases, in the order a pull goes through them.
const (
	// PhaseNone is a plain position in the commit order.
	PhaseNone Phase = 0
	// PhaseEvict removes the rows of the keys the device lost.
	PhaseEvict Phase = 'e'
	// PhaseGrant brings the rows of the keys it gained.
	PhaseGrant Phase = 'g'
	// PhaseDone marks both done: the next pull records the device's new
	// keys and goes on from the plain position.
	PhaseDone Phase = 'd'
)

// PhaseAt is a position within a phase: a table's index and a row id.
type PhaseAt struct {
	Table int
	ID    string
}

// Plain returns the cursor's position in the commit order, out of any
// phase.
func (c Cursor) Plain() Cursor {
	return Cursor{Version: c.Version, Table: c.Table, ID: c.ID, Held: c.Held}
}

// String encodes the cursor as the opaque text clients hold.
func (c Cursor) String() string {
	c.Partial = false
	if c == (Cursor{}) {
		return ""
	}
	var raw string
	switch {
	case c.Phase != PhaseNone:
		raw = fmt.Sprintf("2:%d:%d:%c:%s:%s:%d:%d:%s%s", c.Version, c.Table, c.Phase, c.Keys, c.Held, c.At.Table, len(c.ID), c.ID, c.At.ID)
	case c.Held != "":
		raw = fmt.Sprintf("3:%d:%d:%s:%s", c.Version, c.Table, c.Held, c.ID)
	default:
		raw = fmt.Sprintf("1:%d:%d:%s", c.Version, c.Table, c.ID)
	}
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// ParseCursor decodes a cursor made by Cursor.String. The empty string is
// the start. It returns an error wrapping wire.ErrBadRequest for anything else.
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	bad := fmt.Errorf("malformed cursor %q: want %s: %w", clip(s), wire.CursorFormat, wire.ErrBadRequest)
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, bad
	}
	text := string(raw)
	var c Cursor
	switch {
	case strings.HasPrefix(text, "1:"):
		parts := strings.SplitN(text, ":", 4)
		if len(parts) != 4 {
			return Cursor{}, bad
		}
		if c.Version, c.Table, err = cursorNumbers(parts[1], parts[2]); err != nil {
			return Cursor{}, bad
		}
		c.ID = parts[3]
	case strings.HasPrefix(text, "3:"):
		parts := strings.SplitN(text, ":", 5)
		if len(parts) != 5 || !validKeySetID(parts[3]) {
			return Cursor{}, bad
		}
		if c.Version, c.Table, err = cursorNumbers(parts[1], parts[2]); err != nil {
			return Cursor{}, bad
		}
		c.Held, c.ID = parts[3], parts[4]
	case strings.HasPrefix(text, "2:"):
		parts := strings.SplitN(text, ":", 9)
		if len(parts) != 9 || len(parts[3]) != 1 || !strings.Contains("egd", parts[3]) || !validKeySetID(parts[4]) || !validKeySetID(parts[5]) {
			return Cursor{}, bad
		}
		if c.Version, c.Table, err = cursorNumbers(parts[1], parts[2]); err != nil {
			return Cursor{}, bad
		}
		c.Phase, c.Keys, c.Held = Phase(parts[3][0]), parts[4], parts[5]
		if c.At.Table, err = strconv.Atoi(parts[6]); err != nil || c.At.Table < 0 {
			return Cursor{}, bad
		}
		n, err := strconv.Atoi(parts[7])
		if err != nil || n < 0 || n > len(parts[8]) {
			return Cursor{}, bad
		}
		c.ID, c.At.ID = parts[8][:n], parts[8][n:]
	default:
		return Cursor{}, bad
	}
	return c, nil
}

// validKeySetID reports whether s may be a KeySetID: 16 hex digits, or "".
func validKeySetID(s string) bool {
	if s == "" {
		return true
	}
	if len(s) != 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// cursorNumbers parses a cursor's version and table index.
func cursorNumbers(version, table string) (int64, int, error) {
	v, err := strconv.ParseInt(version, 10, 64)
	if err != nil || v < 0 {
		return 0, 0, wire.ErrBadRequest
	}
	t, err := strconv.Atoi(table)
	if err != nil || t < 0 {
		return 0, 0, wire.ErrBadRequest
	}
	return v, t, nil
}

// Before reports whether position a comes before b in commit order.
func (a Cursor) Before(b Cursor) bool {
	if a.Version != b.Version {
		return a.Version < b.Version
	}
	if a.Table != b.Table {
		return a.Table < b.Table
	}
	return a.ID < b.ID
}

// Echo names the pulling device, and the push sessions whose rows it holds
// already: Changes does not send them back to it.
type Echo struct {
	Device   string
	Sessions map[string]bool
	// SeenEvery is how stale the device's record of when it was last seen
	// may be before a pull writes it again: a pull from the position
	// recorded already, sooner than that, writes nothing. Zero writes on
	// every pull.
	SeenEvery time.Duration
}
