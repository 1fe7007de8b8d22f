package main

import (
	"github.com/tethersync/tether/internal/proctime"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// The cpu scenario, small: a server process with 3 devices, 20 syncs; the
// device's and the server's CPU per sync are both measured (above 0) and
// the sum row carries the target on SQLite.
func TestCPUScenario(t *testing.T) {
	if _, ok := proctime.CPU(); !ok {
		t.Skip("no process CPU time on " + runtime.GOOS)
	}
	var out strings.Builder
	args := []string{"-scenarios", "cpu", "-cpu-devices", "3", "-cpu-syncs", "20", "-runs", "1", "-dir", t.TempDir()}
	if err := run(t.Context(), args, &out); err != nil {
		t.Fatal(err)
	}
	for _, side := range []string{"device process", "server process", "device + server"} {
		re := regexp.MustCompile(`\| cpu: CPU per small sync \(save one row, SyncNow; server with 3 active devices\): ` +
			regexp.QuoteMeta(side) + ` \| 20 \| ([0-9.]+) ms \|`)
		m := re.FindStringSubmatch(out.String())
		if m == nil {
			t.Errorf("no cpu row for the %s in:\n%s", side, out.String())
			continue
		}
		if v, _ := strconv.ParseFloat(m[1], 64); v <= 0 {
			t.Errorf("%s: %s ms of CPU per sync, want more than 0", side, m[1])
		}
	}
	if !strings.Contains(out.String(), "≤ 2.56 ms (half of 5.12 ms, "+cpuReferenceDate+")") {
		t.Errorf("no target on the sum row in:\n%s", out.String())
	}
}
