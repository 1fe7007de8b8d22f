// Package throwaway shares one throwaway database server among the tests
// of a test binary: it starts the server on first use, hands each caller a
// new database, skips the callers (or fails them, when an environment
// variable asks for it) when the machine has no binaries for it, and
// stops it at the end. internal/pgtest and internal/mysqltest are its two
// uses.
package throwaway
