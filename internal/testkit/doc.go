// Package testkit holds helpers shared by tether's tests: sample entities,
// a real server on loopback over a real SQLite store, devices with their
// own SQLite files, and fault injection with one set of faults (Fault) in
// two places: a client's transport (FaultTransport) and a proxy between
// clients and the server (Proxy). Its subpackage stores gives the tests
// the server's stores of each kind.
//
// Only _test.go files import the test kit (it imports testing); .ci/run
// checks that no command or example links it.
package testkit
