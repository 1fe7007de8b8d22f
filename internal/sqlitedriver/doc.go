// Package sqlitedriver opens SQLite databases through whichever SQLite
// driver the binary was built with, the one place where the two drivers
// differ:
//
//   - github.com/mattn/go-sqlite3 (SQLite in C, through cgo), the default
//     when cgo is enabled;
//   - github.com/ncruces/go-sqlite3 (SQLite compiled to Go, no cgo), used
//     when cgo is disabled (CGO_ENABLED=0) or with the build tag
//     tether_purego.
//
// Both register the database/sql driver name "sqlite3", so a binary links
// exactly one of them: import this package instead of either driver.
//
// # Data source names
//
// [Config] says how to open a database; [DSN] spells it for the linked
// driver (go-sqlite3's "_journal_mode=WAL" is "_pragma=journal_mode(WAL)"
// in ncruces). Both drivers store values the same way: tether writes times
// as text itself, and a time.Time bound directly is written in go-sqlite3's
// layout by both.
//
// # Encryption
//
// Only the pure-Go driver encrypts ([Encryption]): [Config.Key] opens the
// database through ncruces' "adiantum" VFS. The cgo driver refuses a key
// with [ErrNoEncryption].
package sqlitedriver
