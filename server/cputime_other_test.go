//go:build !unix

package server_test

import (
	"testing"
	"time"
)

// processCPU is not measured on this system: the benchmarks report 0 CPU.
func processCPU(b *testing.B) time.Duration { return 0 }
