//go:build !unix

package e2e

import (
	"testing"
	"time"
)

// processCPU is not measured on this system: BenchmarkSmallSync reports
// 0 cpu-ns/op.
func processCPU(b *testing.B) time.Duration { return 0 }
