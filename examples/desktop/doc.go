// Command desktop is a small desktop-style app built on tether: a contacts
// list kept in a local SQLite file, with a "Sync now" button, a live
// progress bar, the online state, the last sync, the number of edits not
// yet sent, and the conflict log with "keep mine" and "take theirs".
//
// The Go program serves its own UI (embedded HTML and JavaScript, no build
// step) on 127.0.0.1 and is what a desktop shell (a webview, or simply the
// user's browser) shows. The page follows the app's state with server-sent
// events, fed live from coordinator.Options.OnProgress.
//
// With no flags it starts a demo: an in-process sync server and two
// instances of the app, "laptop" and "desk", each with its own database:
//
//	go run ./examples/desktop
//
// Against a real server:
//
//	go run ./examples/desktop -server https://sync.example.com -token "$TOKEN" -db contacts.db
package main
