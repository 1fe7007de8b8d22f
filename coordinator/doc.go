// Package coordinator runs tether's sync cycle: a connectivity check, a
// push of local changes, then a pull of everyone else's, retrying
// transient failures with exponential backoff and jitter.
//
// [Coordinator.SyncNow] is for a "Sync now" button: it returns [ErrOffline]
// at once when the server is unreachable, and it returns only after a sync
// that started after the call has finished, so a "synced" shown to a user
// covers every edit made before the click. Calls made while a sync runs
// coalesce into at most one follow-up sync. A call whose context ends stops
// its sync at the next safe point when no other caller waits for it.
// [Coordinator.Run] syncs periodically until its context ends.
package coordinator
