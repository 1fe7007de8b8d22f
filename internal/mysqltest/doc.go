// Package mysqltest starts a throwaway MariaDB (or MySQL) server for tests,
// from the machine's own binaries (mariadbd or mysqld, and for MariaDB
// mariadb-install-db or mysql_install_db, on PATH or under /usr/sbin and
// /usr/bin), in a temporary directory, on a free loopback port. One server
// serves a whole test binary; each test gets a database of its own.
//
// Without binaries, tests that need MariaDB are skipped with a message,
// unless TETHER_REQUIRE_MYSQL=1, which makes them fail: CI sets it so it can
// never pass by skipping.
package mysqltest
