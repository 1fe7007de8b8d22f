// Package sqlitestore is the embedded store of the tether server: one
// SQLite file, for one server process. It is the SQLite dialect of the
// shared session and commit flow (package sqlstore) and needs cgo
// (github.com/mattn/go-sqlite3).
//
// Writes go through a single connection, so SQLite serializes them and
// server versions are allocated and made visible in commit order (G1).
// Commits are announced to the subscribers of this process only.
package sqlitestore
