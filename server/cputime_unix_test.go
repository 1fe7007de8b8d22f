//go:build unix

package server_test

import (
	"syscall"
	"testing"
	"time"
)

// processCPU returns the CPU time the test process used so far: on a
// busy machine it varies less than the time the work takes. (The SQLite
// store runs in the process; a PostgreSQL or MariaDB server does not.)
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
