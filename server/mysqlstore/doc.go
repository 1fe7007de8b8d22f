// Package mysqlstore is the MySQL and MariaDB store of the tether server:
// one database (MySQL 8, MariaDB 10.11) shared by any number of server
// processes. It is the MySQL dialect of the shared session and commit flow
// (package sqlstore), on github.com/go-sql-driver/mysql, and needs no cgo.
//
// Commits of one tenant are serialized by a lock on the tenant's row of
// _tether_tenants, which also holds the tenant's version counter: a
// tenant's versions become visible in commit order and a pull (a
// repeatable-read snapshot) never skips a change that commits later (G1).
// Versions are counted per tenant. Pushed rows are staged with multi-row
// inserts. Every key leads with the tenant; ids and tenants are stored in
// a binary, no-pad collation, so rows sort by bytes as on the other stores.
//
// MySQL has no LISTEN/NOTIFY: each store polls _tether_tenants (one small
// row per tenant) every PollInterval while anyone subscribes to events,
// and tells the subscribers of each tenant whose version moved.
package mysqlstore
