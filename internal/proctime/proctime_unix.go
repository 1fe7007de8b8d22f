//go:build unix

package proctime

import (
	"syscall"
	"time"
)

// CPU returns the user and system CPU time the process has used, and
// whether the platform measures it (getrusage).
func CPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}

// Used is CPU without its second result: 0 where the platform does not
// measure it, so that a benchmark reports 0 there.
func Used() time.Duration {
	d, _ := CPU()
	return d
}
