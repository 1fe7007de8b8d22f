//go:build !unix

package proctime

import "time"

// CPU reports no CPU time: the platform has no getrusage.
func CPU() (time.Duration, bool) { return 0, false }

// Used is CPU without its second result: always 0 here.
func Used() time.Duration { return 0 }
