package server

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"golang.org/x/time/rate"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/wire"
)

// Defaults of Options: a zero field takes its default.
const (
	DefaultMaxBodyBytes     = 32 << 20
	DefaultMaxBatchRows     = wire.MaxBatchSize
	DefaultMaxValueBytes    = 4 << 20
	DefaultBodyTimeout      = 60 * time.Second
	DefaultMaxPageBytes     = 8 << 20
	DefaultMaxClockSkew     = 5 * time.Minute
	DefaultAuthFailures     = 1
	DefaultAuthFailureBurst = 20
	DefaultSweepInterval    = time.Minute
	DefaultMaxCost          = 256
	DefaultCostWait         = time.Second
	DefaultMaxStreams       = DefaultMaxUserDevices
)

// Options configures a Server. The zero value works but authenticates
// nobody: set Auth.
type Options struct {
	// Auth authenticates every request but health. When nil, every other
	// request is refused with 401.
	Auth Authenticator
	// Strategies sets the conflict strategy per table. Tables not listed
	// use LastWriterWins.
	Strategies map[string]Strategy
	// Resolvers sets a Go function per table that decides its conflicts
	// instead of its strategy: keep either row, or merge them.
	Resolvers map[string]ResolveFunc
	// Deletes sets per table how a delete settles against an update.
	// Default NewerWins.
	Deletes map[string]DeletePolicy
	// MaxBodyBytes limits request bodies, after decompression; larger
	// bodies get 413. Default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Logger receives the request log: with LogRequests, one line per
	// request (Info for 2xx and 3xx, Warn for 4xx, Error for 5xx; see
	// docs/metrics.md for its fields), else one line per request that
	// failed with a server error (5xx). Default slog.Default().
	Logger      *slog.Logger
	LogRequests bool
	// Observer, when set, hears every request, session, commit, pushed
	// and pulled row and sweep, for metrics (see package
	// server/metrics). Default nil: none.
	Observer Observer
	// Limits bounds the push sessions a device may keep open, and how
	// long what expires is kept; each field has its default.
	Limits Limits
	// MaxBatchRows limits the rows of one pushed batch; larger batches get
	// 413, and the client halves its batch. Default, and most,
	// DefaultMaxBatchRows (wire.MaxBatchSize).
	MaxBatchRows int
	// RateLimit is the sustained number of requests per second one bearer
	// token may make, with bursts of RateBurst (default 2 × RateLimit,
	// at least 1). Requests over it get 429 with Retry-After, which the
	// client honours. Default 0: no limit.
	RateLimit rate.Limit
	RateBurst int
	// MaxValueBytes limits one column value of a pushed row, while it is
	// read; larger values get 413. Default DefaultMaxValueBytes.
	MaxValueBytes int
	// BodyTimeout is how long a request body may take to arrive; a slower
	// one is cut off. Default DefaultBodyTimeout.
	BodyTimeout time.Duration
	// MaxPageBytes bounds a pull page's rows, as their values' sizes add
	// up: a page holds at least one row, and stops before the row that
	// would take it past the bound. Default DefaultMaxPageBytes.
	MaxPageBytes int
	// MaxCost bounds the expensive work the server does at once, digests
	// and snapshot pages, by their cost: a digest costs one unit per
	// column it digests (in every table it covers), a snapshot page one
	// per 100 rows of its limit. One tenant holds at most a quarter of
	// MaxCost at once (a request costing more runs with that quarter), so
	// that no tenant's requests starve the others'. A request past its
	// tenant's share, or whose cost is not free within CostWait, gets 429
	// with Retry-After; a table's digest the tenant's version has not
	// moved since is, then, served from memory instead. Default
	// DefaultMaxCost.
	MaxCost int64
	// CostWait is how long an expensive request waits for its cost (see
	// MaxCost) before it is refused. Default DefaultCostWait.
	CostWait time.Duration
	// MaxClockSkew is how far ahead of the server's clock a pushed row's
	// clock stamp may be: a later stamp is replaced, at commit, by one of
	// the server's clock (its device part kept), so that no device's wrong
	// clock wins last-writer-wins for long or poisons other devices'
	// clocks. Default DefaultMaxClockSkew.
	MaxClockSkew time.Duration
	// AuthFailures is the number of failed authentications per second one
	// client address may make, with bursts of AuthFailureBurst (default
	// DefaultAuthFailureBurst); past it, requests from that address get
	// 429 before their token is looked at. Default DefaultAuthFailures;
	// negative means no limit.
	AuthFailures     rate.Limit
	AuthFailureBurst int
	// MaxStreams is the number of event streams (GET /v1/events) one
	// principal, a tenant's user, may hold open on this server at once;
	// past it, a new stream gets 429 (wire.ErrRateLimited) naming the
	// limit, until one of the principal's streams ends. Each open stream
	// holds a connection, a goroutine and a subscription, about 30 KB.
	// Default DefaultMaxStreams. (A stream also ends when the credentials
	// that opened it expire: see Principal.Expires.)
	MaxStreams int
	// SweepInterval is how often the server discards what has expired in
	// the store (Store.Sweep: sessions idle past Limits.SessionIdle and
	// their staged rows, and what is past its retention), a bounded
	// amount each time, whether or not their devices come back. Default
	// DefaultSweepInterval; negative turns it off. Close stops it.
	SweepInterval time.Duration
	// Scopes, when set, decides which rows each device holds and which
	// rows its principal may write (see Scopes and the README's "Who sees
	// what"). server.New refuses scopes under which a device could hold a
	// row whose referenced row it may not see. Nil: every device of a
	// tenant holds, and writes, every row of the tenant.
	Scopes *Scopes
	// Authorize, when set, may refuse a pushed row after the scope check
	// (for every table, scoped or not): the row is not applied, the rest
	// of the session is, and the pushing device gets a conflict of
	// strategy wire.StrategyForbidden. Server.Write's rows skip it.
	Authorize Authorizer
	// Trusted reports whether a principal may write through the HTTP write
	// API (POST /v1/write), which skips the scope and Authorize checks: a
	// back office's. Nil: no principal may.
	Trusted func(Principal) bool
	// CaptureExternalWrites makes server.New install triggers on the
	// store's synced tables that record the rows inserted, updated and
	// deleted with plain SQL, outside the server (a back office, an
	// import), and commits them as writes of ExternalDevice: they get
	// versions, reach devices, meet device edits through the tables'
	// strategies with a clock stamp of the database's clock at the write,
	// and follow the reference rules and scopes (see docs/server.md).
	// The store must be a Capturer. Off (the default), server.New drops
	// the triggers if an earlier run installed them.
	CaptureExternalWrites bool
	// CaptureInterval is how often external writes recorded since are
	// committed, besides at the start of every commit of their tenant.
	// Default DefaultCaptureInterval.
	CaptureInterval time.Duration
	// Now is the clock of the server's time rules: the rate limits and
	// MaxClockSkew. Default time.Now. The store has its own (the stores'
	// Options.Now), for session expiry and retention; a test gives both
	// the same fake clock.
	Now func() time.Time
}

// withDefaults returns o with zero fields set to their defaults.
func (o Options) withDefaults() Options {
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.Limits = o.Limits.WithDefaults()
	if o.MaxBatchRows <= 0 || o.MaxBatchRows > DefaultMaxBatchRows {
		o.MaxBatchRows = DefaultMaxBatchRows
	}
	if o.RateLimit > 0 && o.RateBurst <= 0 {
		o.RateBurst = max(1, int(2*o.RateLimit))
	}
	if o.MaxValueBytes <= 0 {
		o.MaxValueBytes = DefaultMaxValueBytes
	}
	if o.BodyTimeout <= 0 {
		o.BodyTimeout = DefaultBodyTimeout
	}
	if o.MaxPageBytes <= 0 {
		o.MaxPageBytes = DefaultMaxPageBytes
	}
	if o.MaxClockSkew <= 0 {
		o.MaxClockSkew = DefaultMaxClockSkew
	}
	if o.AuthFailures == 0 {
		o.AuthFailures = DefaultAuthFailures
	}
	if o.AuthFailureBurst <= 0 {
		o.AuthFailureBurst = DefaultAuthFailureBurst
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.MaxCost <= 0 {
		o.MaxCost = DefaultMaxCost
	}
	if o.CostWait <= 0 {
		o.CostWait = DefaultCostWait
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = DefaultMaxStreams
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CaptureInterval <= 0 {
		o.CaptureInterval = DefaultCaptureInterval
	}
	return o
}

// Check returns an error naming the first table of Strategies, Resolvers
// or Deletes that schema lacks, or the first unknown strategy or delete
// policy.
func (o Options) Check(schema entity.Schema) error {
	for _, table := range slices.Sorted(maps.Keys(o.Strategies)) {
		if schema.Table(table) == nil {
			return fmt.Errorf("strategy for unknown table %q", table)
		}
		if err := validStrategy(o.Strategies[table]); err != nil {
			return fmt.Errorf("table %q: %w", table, err)
		}
	}
	for _, table := range slices.Sorted(maps.Keys(o.Resolvers)) {
		if schema.Table(table) == nil {
			return fmt.Errorf("resolver for unknown table %q", table)
		}
	}
	for _, table := range slices.Sorted(maps.Keys(o.Deletes)) {
		if schema.Table(table) == nil {
			return fmt.Errorf("delete policy for unknown table %q", table)
		}
		if d := o.Deletes[table]; d != NewerWins && d != DeleteAlwaysWins {
			return fmt.Errorf("table %q: unknown delete policy %q", table, d)
		}
	}
	return o.Scopes.check(schema)
}

// Defaults of Limits: a zero field takes its default.
const (
	DefaultMaxOpenSessions      = 4
	DefaultSessionIdle          = 24 * time.Hour
	DefaultMaxSessionRows       = 100_000
	DefaultMaxSessionBytes      = 256 << 20
	DefaultMaxTenantStagedBytes = 2 << 30
	DefaultDeviceActivity       = 30 * 24 * time.Hour
	DefaultSessionRetention     = 30 * 24 * time.Hour
	DefaultAuditRetention       = 365 * 24 * time.Hour
	DefaultMaxUserDevices       = 100
	DefaultDeviceRetention      = 365 * 24 * time.Hour
)

// Limits bound what a device may keep open on the server, and how long
// what expires is kept. Stores apply them (Store); Server passes its
// Options.Limits.
type Limits struct {
	// MaxOpenSessions is the number of uncommitted push sessions a user
	// may hold on a device. Default DefaultMaxOpenSessions.
	MaxOpenSessions int
	// SessionIdle is how long a session may go without a batch before it
	// expires and its staged rows are discarded. Default
	// DefaultSessionIdle.
	SessionIdle time.Duration
	// MaxSessionRows and MaxSessionBytes bound what one session stages
	// (bytes as wire.Row.Size counts them); a batch past them gets 413
	// (wire.ErrSessionFull), and the push engine commits the session and
	// goes on in a new one. They also bound how long one commit holds the
	// SQLite store's single writer. Defaults DefaultMaxSessionRows and
	// DefaultMaxSessionBytes.
	MaxSessionRows  int
	MaxSessionBytes int64
	// MaxTenantStagedBytes bounds what all uncommitted sessions of a
	// tenant hold together; past it, batches get 429 until sessions commit
	// or expire. A session that one request opens, fills and commits (a
	// push of one batch) leaves nothing staged, and is bounded by
	// MaxSessionRows and MaxSessionBytes alone. Default
	// DefaultMaxTenantStagedBytes.
	MaxTenantStagedBytes int64

	// DeviceActivity is how long a device counts as active after its
	// pull position last moved (a request naming a device it cannot
	// prove, a registration alone, or pulls that never move, make no
	// device active). Tombstones are purged once every active device of
	// the tenant has pulled past them (or, when none is active, all of
	// them before the tenant's latest version); a device that comes back
	// later, with an older cursor, gets 410 history_purged and rebuilds
	// from a snapshot. It is also the window of MaxUserDevices. Default
	// DefaultDeviceActivity.
	DeviceActivity time.Duration
	// SessionRetention is how long committed sessions and their stored
	// answers are kept (a commit re-sent later than that is answered 404,
	// and the device pushes what it still has again). Default
	// DefaultSessionRetention.
	SessionRetention time.Duration
	// AuditRetention is how long audit log entries are kept. Default
	// DefaultAuditRetention.
	AuditRetention time.Duration
	// MaxUserDevices is the number of devices one user may have seen in
	// a tenant within DeviceActivity; registering one more is
	// wire.ErrDeviceLimit (409 device_limit). So a user's registrations
	// kept at once are at most MaxUserDevices per DeviceActivity of
	// DeviceRetention. A shared device counts for the user who registered
	// it first. Default DefaultMaxUserDevices.
	MaxUserDevices int
	// DeviceRetention is how long the server keeps the registration of a
	// device it has not seen (no registration, no pull): its id, the
	// hash of its key (so that no one else registers the id meanwhile)
	// and its schema; at least DeviceActivity. A device that comes back
	// later registers again on its own (wire.ErrDeviceUnknown) and
	// rebuilds from a snapshot. Default DefaultDeviceRetention.
	DeviceRetention time.Duration
}

// WithDefaults returns l with zero fields set to their defaults.
func (l Limits) WithDefaults() Limits {
	if l.MaxOpenSessions <= 0 {
		l.MaxOpenSessions = DefaultMaxOpenSessions
	}
	if l.SessionIdle <= 0 {
		l.SessionIdle = DefaultSessionIdle
	}
	if l.MaxSessionRows <= 0 {
		l.MaxSessionRows = DefaultMaxSessionRows
	}
	if l.MaxSessionBytes <= 0 {
		l.MaxSessionBytes = DefaultMaxSessionBytes
	}
	if l.MaxTenantStagedBytes <= 0 {
		l.MaxTenantStagedBytes = DefaultMaxTenantStagedBytes
	}
	if l.DeviceActivity <= 0 {
		l.DeviceActivity = DefaultDeviceActivity
	}
	if l.SessionRetention <= 0 {
		l.SessionRetention = DefaultSessionRetention
	}
	if l.AuditRetention <= 0 {
		l.AuditRetention = DefaultAuditRetention
	}
	if l.MaxUserDevices <= 0 {
		l.MaxUserDevices = DefaultMaxUserDevices
	}
	if l.DeviceRetention <= 0 {
		l.DeviceRetention = DefaultDeviceRetention
	}
	l.DeviceRetention = max(l.DeviceRetention, l.DeviceActivity)
	return l
}
