//go:build !(sqlite_trace && cgo && !tether_purego)

package e2e

import "testing"

// stmtCounter counts nothing: statements are counted only in a build with
// -tags sqlite_trace.
type stmtCounter struct{}

func countStatements(*testing.B) *stmtCounter { return &stmtCounter{} }

func (*stmtCounter) reset()            {}
func (*stmtCounter) report(*testing.B) {}
