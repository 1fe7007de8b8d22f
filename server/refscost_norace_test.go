//go:build !race

package server_test

// raceDetector reports whether the tests run under the race detector,
// which slows Go code about ten times and the databases not at all.
const raceDetector = false
