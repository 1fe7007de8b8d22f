// Package dbserver starts a throwaway PostgreSQL or MariaDB (or MySQL)
// server from the machine's own binaries, in a new temporary directory, on
// a free loopback port, tuned for speed over durability: the tests and
// tether-bench use it. It does not import testing; the tests reach it
// through internal/testkit/stores, which shares one server per test binary
// and skips tests when the binaries are missing.
//
// PostgreSQL is looked for as initdb and postgres on PATH or under
// /usr/lib/postgresql/*/bin (the newest version first); MariaDB as
// mariadbd or mysqld, with mariadb-install-db or mysql_install_db, on PATH
// or under /usr/sbin and /usr/bin. When running as root, the servers run as
// the postgres or mysql user (else nobody), since they refuse root.
package dbserver
