// Package push is the push engine: it sends a device's dirty rows to the
// server in batches, inside one server session, and commits the session.
//
// All of its progress is kept in the local store, so a push interrupted by
// a network failure, a crash or a reboot resumes with the first batch the
// server did not acknowledge (G5). A batch the server answers with 413 is
// halved and sent again.
//
// The first batch opens the session and the last one commits it, in the
// same requests (a push of one batch is one request); the last batch is
// recorded, with the digest of its body, before it goes, so that when its
// answer is lost the next push settles it with the server instead of
// sending rows that may have changed since.
//
// # Files
//
// engine.go holds the Engine and what it needs of the store and the
// server; send.go one pass over a session: the batches sent and what each
// answer leaves to do; read.go the batches read ahead while one is on the
// wire; finish.go the endings: acknowledged batches, the commit, the
// settle of a lost last batch.
package push
