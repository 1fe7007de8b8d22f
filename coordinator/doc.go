// Package coordinator runs tether's sync cycle: a push of local changes,
// then a pull of everyone else's, retrying transient failures with
// exponential backoff and jitter. There is no connectivity check of its
// own: each request must get a connection within a short timeout, and one
// that cannot ends the sync as offline. The device registers with the
// server only on its first sync, when its schema changed, or when the
// server lost its registration.
//
// Each retry is reported to Options.OnProgress ([PhaseRetry], with the
// attempt, the wait and the error), and every conflict the sync told the
// device of, of its pushes and learned through its pulls, to
// Options.OnConflict and in [Report].Conflicts.
//
// [Coordinator.SyncNow] is for a "Sync now" button: it returns [ErrOffline]
// at once when the server is unreachable, and it returns only after a sync
// that started after the call has finished, so a "synced" shown to a user
// covers every edit made before the click. Calls made while a sync runs
// coalesce into at most one follow-up sync. A call whose context ends stops
// its sync at the next safe point when no other caller waits for it.
// [Coordinator.Run] syncs periodically until its context ends, and
// [Coordinator.Live] also soon after the server announces another device's
// changes. [Coordinator.Verify] compares the device's tables with the
// server's.
//
// # Files
//
// coordinator.go holds the type, its options and its lifecycle (New,
// Close, Shutdown); syncnow.go the coalescing of SyncNow calls into runs;
// cycle.go one run (retries, push then pull); register.go the device's
// registration; rebuild.go the rebuild from a snapshot after a long
// absence; progress.go the progress reports; loop.go the periodic and live
// loops; verify.go the digest comparison.
package coordinator
