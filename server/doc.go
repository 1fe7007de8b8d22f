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
//	PUT  /v1/sessions/{id}/batches/{seq}      stage batch seq (idempotent: a re-sent batch replaces itself)
//	POST /v1/sessions/{id}/commit             apply the whole session in one transaction (idempotent)
//	GET  /v1/changes?cursor=&limit=           rows changed after cursor, in commit order
//
// Session, batch and commit requests carry the device id in the
// X-Tether-Device header. Errors are JSON bodies naming the problem, with
// a 4xx status for bad requests; see package wire for the codes.
//
// # Conflicts
//
// Each pushed row carries the server version it was based on. When the
// server row moved since, the table's [Strategy] decides the winner:
// [LastWriterWins] by hybrid logical clock stamp (the default),
// [ServerWins] or [ClientWins]. A delete against an update follows the
// same rule. The commit answer lists every conflict and its winning row.
//
// # Tenancy
//
// Every row belongs to the tenant of the principal that wrote it, and every
// query is scoped to the caller's tenant. ModifiedBy is the authenticated
// user, never a value from the payload.
package server
