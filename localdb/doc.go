// Package localdb is a device's local store: one SQLite file holding the
// app's synced tables and everything tether needs to sync them.
//
// It has two readers. An app opens a [DB] and reads and writes its data
// through it; the sync engines (packages push, pull and coordinator) work
// through the DB's [Syncer], which an app does not need.
//
// # The app's API: DB
//
// [Open] (or [OpenWith], for [Options]) opens or creates the file, in WAL
// mode with foreign keys on. The returned [*DB] is safe for concurrent use;
// [DB.Close] closes it, after which every method that returns an error
// returns one wrapping [ErrClosed].
//
//	db, err := localdb.Open(ctx, "app.db", reg)
//	err = db.Save(ctx, &customer)                  // insert or update, marks dirty
//	err = db.Get(ctx, &customer, id)               // ErrNotFound when absent or deleted
//	list, err := localdb.Query[Customer](ctx, db, "name LIKE ?", "A%")
//	err = db.Delete(ctx, &customer)                // tombstone, dirty
//	err = db.Update(ctx, func(tx *localdb.Tx) error { ... }) // one transaction
//
// [DB.Save], [DB.Get], [DB.Delete], [Query] and [DB.Update] with its [Tx]
// are the CRUD API. Every local write marks its row dirty and stamps it;
// [DB.Pending] counts the dirty rows. A delete keeps the row as a
// tombstone (Deleted in [entity.Meta]) so that the deletion syncs and
// children referencing it stay valid. [DB.SQL] gives the *sql.DB for the
// app's own queries; its inserts, updates and deletes on synced tables are
// tracked the same way.
//
// Each conflict the server resolved on a pushed row is recorded as a
// [ConflictRecord]; [DB.Conflicts] lists the open ones, [DB.KeepLocal]
// writes the local version again as a new edit, and [DB.DismissConflict]
// accepts the winner. Both return [ErrConflictClosed] for a conflict that
// is not open.
//
// # The engines' API: Syncer
//
// The engines keep their whole state in the file, so that an interrupted
// sync resumes where it stopped (G5). [DB.Syncer] returns their view:
//
//   - Push: [Syncer.BeginPush] records a new session; [Syncer.NextDirty]
//     reads [DirtyBatch]es of dirty rows in table priority order from a
//     [PushPos]; [Syncer.MarkSent] records each acknowledged batch with the
//     [PushState] ([Syncer.PushState] reads it back after a restart);
//     [Syncer.FinishPush] applies the server's commit answer, clearing the
//     dirty flag only of rows unchanged since they were read (G2);
//     [Syncer.AbandonPush] forgets a session the server no longer knows.
//   - Pull: [Syncer.Cursor] is the stored position in the server's change
//     feed; [Syncer.ApplyChanges] applies a page of rows and stores the
//     cursor after it in the same transaction, without tracking the writes,
//     and never overwrites a locally dirty row. [Syncer.OwnSessions] names
//     the pushed sessions whose rows the pull need not bring back.
//   - Rebuild: a device whose cursor the server's history no longer reaches
//     rebuilds its clean rows from a snapshot ([Syncer.BeginRebuild],
//     [Syncer.ApplySnapshot], [Syncer.FinishRebuild]).
//   - Tenant and registration: [Syncer.BindTenant] binds the file to one
//     tenant on the first sync and refuses any other ([ErrOtherTenant]);
//     [Syncer.SetRegistration] remembers what the device registered.
//   - Convergence: [Syncer.Digest] is the digest of a table, comparable with
//     the server's.
//
// # What the file holds
//
// For every entity of the [entity.Registry] it is opened with, a table
// derived from the schema (a column per field, "id" as primary key,
// references as foreign keys checked at commit), plus bookkeeping columns
// whose names start with an underscore: _dirty (changes not yet
// acknowledged by the server), _deleted (a tombstone), _version (the server
// version last synced), _hlc (the clock stamp of the last change),
// _modified_at, _modified_by, and the local change counter and changed
// columns used by the push. Triggers track writes made with plain SQL.
// When the app's structs have grown, opening the file adds the missing
// tables and columns (G11); it never drops anything.
//
// Next to them, tables of its own: _tether_state (device id and key, clock, tenant,
// pull cursor, push state), _tether_ctl (change-tracking suppression and
// the change counter), _tether_sent (batches sent in the current push
// session, one row each), _tether_own (sessions whose rows the device holds as pushed)
// and _tether_conflicts (the conflict log). Their layout changes through
// one numbered list of steps, applied in a transaction when the file is
// opened and recorded in _tether_migrations (PRAGMA user_version is left
// to the app); a file of a later layout than this version of tether knows
// is refused.
//
// # The clock
//
// Every change carries a clock stamp (see [wire.FormatStamp]) from a hybrid
// logical clock: physical milliseconds, a counter and the device id
// ([DB.DeviceID]). It is persisted, never goes backwards, and moves past
// every stamp pulled (up to [MaxStampAhead] ahead of the wall clock), so a
// device with a wrong wall clock still orders its edits after what it has
// seen.
package localdb
