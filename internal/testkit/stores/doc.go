// Package stores gives tests the server's stores of each kind: SQLite
// always, PostgreSQL and MySQL (MariaDB) on throwaway servers started from
// the machine's binaries by internal/dbserver. One server of each kind
// serves a whole test binary, started on first use and stopped by Main;
// each test gets databases of its own.
//
// Without binaries, tests that need PostgreSQL or MariaDB are skipped with
// a message, unless TETHER_REQUIRE_POSTGRES=1 or TETHER_REQUIRE_MYSQL=1,
// which make them fail: CI sets both so it can never pass by skipping.
//
// Only tests import this package.
package stores
