// Package push is the push engine: it sends a device's dirty rows to the
// server in batches, inside one server session, and commits the session.
//
// All of its progress is kept in the local store, so a push interrupted by
// a network failure, a crash or a reboot resumes with the first batch the
// server did not acknowledge (G5). A batch the server answers with 413 is
// halved and sent again.
package push
