package server

import (
	"context"
	"time"

	"github.com/tethersync/tether/wire"
)

// Observer hears what the server does, for metrics (package
// server/metrics implements it with Prometheus). Server calls it from the
// request's goroutine, and from the sweep's: implementations must be safe
// for concurrent use, quick, and must not block. Set it in
// Options.Observer.
//
// The store reports what only it knows (whether a session was opened or
// committed for the first time, a sweep's work) to the observer of the
// context it is called with (ObserverOf); the SQL stores do.
type Observer interface {
	// Request is called once per HTTP request, after its answer is
	// written (for an event stream, when the stream ends).
	Request(RequestInfo)
	// SessionOpened is called when a push session is opened: a request
	// that opens a session already open (a retry) is not counted.
	SessionOpened(tenant string)
	// Committed is called after a push session commits: a re-sent
	// commit, answered with the first commit's answer, is not.
	Committed(CommitInfo)
	// RowsPushed is called with the rows of each pushed batch the server
	// accepted (a batch sent again is counted again).
	RowsPushed(tenant string, rows int)
	// RowsPulled is called with the rows of each page of changes or of a
	// snapshot the server answered.
	RowsPulled(tenant string, rows int)
	// Swept is called after each sweep (Options.SweepInterval).
	Swept(SweepInfo)
}

// RequestInfo describes an answered HTTP request.
type RequestInfo struct {
	// Method is the request's method, Route the pattern of the endpoint
	// it reached ("POST /v1/sessions/{session}/commit"; "/" for no
	// endpoint): never the raw path.
	Method, Route string
	// Status is the HTTP status of the answer, Code its wire error code
	// ("rate_limited", "too_large", ...; "" for a success).
	Status int
	Code   string
	// Duration is from the request's arrival to the end of its answer.
	Duration time.Duration
	// Tenant is the authenticated tenant, "" before authentication;
	// Device is the device the request proved it is (its key), or "".
	Tenant, Device string
	// BytesIn counts the body bytes read as they came (compressed, if
	// they were), BytesOut those written, after compression.
	BytesIn, BytesOut int64
	// Err is the error of a failed request, nil for a success.
	Err error
}

// CommitInfo describes a commit of a push session.
type CommitInfo struct {
	Tenant, Device string
	// Applied is the number of rows the commit applied.
	Applied int
	// Conflicts are the conflicts it settled, with their strategies.
	Conflicts []wire.Conflict
	// Duration is how long the store took to commit, transaction retries
	// included (for a batch that commits, its staging too).
	Duration time.Duration
}

// SweepInfo counts what one sweep discarded (Store.Sweep), by kind.
type SweepInfo struct {
	ExpiredSessions   int // uncommitted sessions idle past Limits.SessionIdle
	Tombstones        int // purged tombstones (and the scope keys rows they held)
	CommittedSessions int // committed sessions past Limits.SessionRetention
	AuditEntries      int // audit entries past Limits.AuditRetention
	Devices           int // registrations past Limits.DeviceRetention
	Schemas           int // device schemas no device or open session names
	// ActiveDevices counts, per tenant, the devices whose pull position
	// moved within Limits.DeviceActivity; nil when the store does not
	// count them.
	ActiveDevices map[string]int
	// Err is the sweep's error, nil when it went through.
	Err error
}

// observerKey carries an Observer in a context.
type observerKey struct{}

// WithObserver returns a context that carries o, for a Store to report to
// (ObserverOf). Server passes it to the store on every call when
// Options.Observer is set. It is for Store implementations and their
// tests.
func WithObserver(ctx context.Context, o Observer) context.Context {
	return context.WithValue(ctx, observerKey{}, o)
}

// ObserverOf returns the Observer ctx carries (WithObserver), or one that
// does nothing: never nil.
func ObserverOf(ctx context.Context) Observer {
	if o, ok := ctx.Value(observerKey{}).(Observer); ok && o != nil {
		return o
	}
	return nopObserver{}
}

// nopObserver hears nothing.
type nopObserver struct{}

func (nopObserver) Request(RequestInfo)    {}
func (nopObserver) SessionOpened(string)   {}
func (nopObserver) Committed(CommitInfo)   {}
func (nopObserver) RowsPushed(string, int) {}
func (nopObserver) RowsPulled(string, int) {}
func (nopObserver) Swept(SweepInfo)        {}

// observer returns Options.Observer, or one that does nothing.
func (s *Server) observer() Observer {
	if s.opts.Observer != nil {
		return s.opts.Observer
	}
	return nopObserver{}
}
