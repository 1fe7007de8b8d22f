// Package sqlitestore is the embedded store of the tether server: one
// SQLite file, for one server process. It is the SQLite dialect of the
// shared session and commit flow (package sqlstore), on the SQLite driver
// the binary links (internal/sqlitedriver: go-sqlite3 with cgo, the pure-Go
// ncruces/go-sqlite3 without).
//
// Writes go through a single connection, so SQLite serializes them and
// server versions are allocated and made visible in commit order (G1).
// Commits are announced to the subscribers of this process only.
package sqlitestore
