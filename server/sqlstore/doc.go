// Package sqlstore is the tether server's store over a SQL database: the
// session and commit flow, written once, over a small [Dialect] that each
// database implements (server/sqlitestore, server/pgstore,
// server/mysqlstore).
//
// The flow: a device registers (bound to its tenant for good); opens a push
// session; stages batches of rows into typed staging tables (a re-sent
// batch replaces itself, G3); commits, which in one transaction draws the
// tenant's next version (Dialect.NextVersion, serializing the tenant's
// commits so versions become visible in commit order, G1), finds the
// staged rows whose server row moved since their base and settles each
// with the server's resolver, applies the rest with one statement per
// table in priority order (G4), records the audit log and stores the
// commit's answer for re-sent commits. Pulls read pages in commit order
// from one snapshot. Every query is scoped to the caller's tenant (G8).
//
// # Layout
//
// The tables the store creates are described once, as [TableDef] values,
// and each dialect spells their types and DDL. The bookkeeping tables
// change through one ordered, numbered list of steps, applied in a
// transaction under [Dialect.LockMigrations] and recorded in
// _tether_migrations: the next layout change is one more step. Synced
// tables gain the tables and columns the app's schema gains (G11).
//
// # Revoked devices
//
// [Store.SetDeviceRevoked] revokes a lost device, or reinstates it: a
// flag of its row, which the check of every request naming a device
// reads with the key it reads anyway, so a revoked device's requests are
// refused (wire.ErrDeviceRevoked) at no cost of their own.
//
// # Writes made outside the store
//
// With server.Options.CaptureExternalWrites, a [Capturing] dialect's
// triggers record the rows that plain SQL inserts, updates and deletes in
// the synced tables (in _tether_captured, and a deleted row's last values
// in its staging table), and [Store.Capture], and every commit first,
// stages them as a session of server.ExternalDevice and commits it through
// the same flow (G16).
package sqlstore
