// Package testkit holds helpers shared by tether's tests: sample entities,
// a real server on loopback over a real SQLite store, and devices with
// their own SQLite files.
package testkit
