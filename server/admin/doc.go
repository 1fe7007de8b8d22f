// Package admin holds the commands of tether-admin, an operator's tool
// over a tether server database and over device database files. The
// command is a thin main over [Run]; an app that embeds the server can run
// the same commands from its own binary (see [Options.Open]).
//
// # Commands
//
//	devices   -db URL -tenant T [-unseen D]  a tenant's devices: user, last seen, pull position, lag, revoked
//	sessions  -db URL -tenant T              open push sessions: device, opened, last activity, staged rows and bytes
//	schema    -db URL -tenant T              the app schemas the tenant's devices registered with, and the server's tables
//	keys      -db URL -tenant T -user U      the scope keys a user's devices hold, and the rows each key brings
//	revoke    -db URL -tenant T -device D    revoke a lost device: its requests are refused until reinstated
//	reinstate -db URL -tenant T -device D    let a revoked device sync again
//	device    FILE [-conflicts N]            a device database: tenant, device id, cursor, pending rows, conflict log
//
// Each prints aligned tables, or JSON with -json; -help describes its
// flags. -db is what tether-server's -db is: a SQLite path, a
// postgres:// URL or a mysql:// URL. The commands open the server
// database as tether-server does, without the app's schema, and a
// device file read-only ([localdb.Inspect]); all but revoke and
// reinstate only read.
//
// # Errors
//
// A tenant that neither registered a device nor committed is an error
// wrapping [sqlstore.ErrUnknownTenant]; a user without a device in the
// tenant, [ErrUnknownUser]; a -db path that is not a tether server
// database, [ErrNotServer]; a device file that is not a tether database,
// [localdb.ErrNotDevice]; revoking a device the tenant has not,
// [sqlstore.ErrDeviceNotFound]. Run returns [flag.ErrHelp] after -help.
package admin
