package proctime_test

import (
	"testing"
	"time"

	"github.com/tethersync/tether/internal/proctime"
)

// CPU grows with work done, where the platform measures it.
func TestCPUGrows(t *testing.T) {
	c0, ok := proctime.CPU()
	if !ok {
		t.Skip("no getrusage on this platform")
	}
	deadline := time.Now().Add(5 * time.Second)
	x := 0
	for c, _ := proctime.CPU(); c-c0 < 10*time.Millisecond; c, _ = proctime.CPU() {
		if time.Now().After(deadline) {
			t.Fatalf("CPU moved %v in 5 s of busy work", c-c0)
		}
		for i := range 100_000 {
			x += i
		}
	}
	_ = x
}
