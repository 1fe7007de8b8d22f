// Package pgstore is the production store of the tether server: one
// PostgreSQL database shared by any number of server processes. It is the
// PostgreSQL dialect of the shared session and commit flow (package
// sqlstore), built on pgx, and needs no cgo.
//
// No process keeps state another needs: sessions, staged batches and
// versions all live in the database. Commits of one tenant are serialized
// by a transaction-scoped advisory lock taken before the session's version
// is drawn from a sequence, so a tenant's versions become visible in
// commit order and a pull never skips a change that commits later (G1).
// Pushed rows are staged with COPY. Processes learn of each other's commits
// through LISTEN/NOTIFY; when the listening connection fails, the store
// logs it (log/slog's default logger, once per failure and once when it
// listens again) and listens again with capped backoff until it closes,
// and subscribers get an event, since notices may have been missed.
// Every table's primary key and indexes lead with
// the tenant, so the store can be distributed by tenant.
package pgstore
