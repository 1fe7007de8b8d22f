// Package server is the tether reference sync server: an [http.Handler]
// over a [Store].
//
// # Endpoints
//
// All under /v1, JSON bodies (gzip accepted both ways), bearer token auth
// except health:
//
//	GET  /v1/health                           liveness
//	POST /v1/devices                          register the calling device to the token's tenant
//	POST /v1/sessions                         open a push session
//	PUT  /v1/sessions/{id}/batches/{seq}      stage batch seq (idempotent: a re-sent batch replaces itself);
//	                                          ?open=1 opens the session first, ?commit=1 commits it after
//	                                          (a small push is one request), ?attempt=n numbers the try
//	POST /v1/sessions/{id}/commit             apply the whole session in one transaction (idempotent)
//	DELETE /v1/sessions/{id}                  abandon an open session and what it staged (idempotent)
//	GET  /v1/changes?cursor=&limit=&own=      rows changed after cursor, in commit order
//	GET  /v1/snapshot?cursor=&limit=          the tenant's live rows, for a device that must rebuild
//	GET  /v1/digest, POST /v1/digest          digests of the tenant's live rows
//	GET  /v1/events                           a server-sent event after each commit of the tenant
//	POST /v1/write                            a trusted back office's rows, as one session (Options.Trusted; idempotent per request id)
//
// Registration, session, batch and commit requests, and pulls that record
// the device's position, carry the device id in the X-Tether-Device header
// and the device's key in X-Tether-Device-Key: the first registration
// records the key's SHA-256, and from then on a request naming the device
// with another key, or none, is refused (403 device_key): a member's
// token acts only through the devices it holds. A user holds at most
// Options.MaxStreams event streams; a stream ends when its token expires.
// Errors are JSON bodies naming the problem, with a 4xx status for bad
// requests; see package wire for the codes.
//
// # Conflicts
//
// Each pushed row carries the server version it was based on. When the
// server row moved since, the table's [Strategy] decides the winner:
// [LastWriterWins] by hybrid logical clock stamp (the default),
// [ServerWins], [ClientWins] or [MergeColumns], or a [ResolveFunc]. A
// delete against an update follows the same rule. The commit answer lists
// every conflict and its winning row. References between tables are kept
// whole across devices by each reference's policy (restore or cascade).
//
// # Running
//
// [New] takes a [Store] and [Options], whose zero value works (but
// authenticates nobody: set Options.Auth); every limit has a Default
// constant, which cmd/tether-server uses for its flags. [Limits] bound what
// devices keep open and how long what expires is kept; the server sweeps
// the store every Options.SweepInterval until [Server.Close]. The time
// rules read a clock that a test can replace: Options.Now for the rate
// limits and clock stamps, the store's own for expiry and retention.
//
// # Observing
//
// Options.Logger gets one line per request with Options.LogRequests (else
// per server error), and an [Observer] in Options.Observer hears every
// request, session, commit and sweep: package server/metrics counts them
// as Prometheus metrics (docs/metrics.md).
//
// # Stores
//
// The session and commit flow is written once, in package sqlstore, over a
// small dialect per database: sqlitestore (embedded, cgo), pgstore and
// mysqlstore (any number of server processes). Package server itself needs
// no cgo.
//
// # Tenancy
//
// Every row belongs to the tenant of the principal that wrote it, and every
// query is scoped to the caller's tenant; each tenant counts its own
// versions. ModifiedBy is the authenticated
// user, never a value from the payload.
package server
