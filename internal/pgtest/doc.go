// Package pgtest starts a throwaway PostgreSQL server for tests, from the
// machine's own binaries (initdb and postgres on PATH or under
// /usr/lib/postgresql/*/bin), in a temporary directory, on a free loopback
// port. One server serves a whole test binary; each test gets a database of
// its own.
//
// Without binaries, tests that need PostgreSQL are skipped with a message,
// unless TETHER_REQUIRE_POSTGRES=1, which makes them fail: CI sets it so it
// can never pass by skipping.
package pgtest
