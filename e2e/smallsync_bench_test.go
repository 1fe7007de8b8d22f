package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"testing"

	"github.com/tethersync/tether/internal/proctime"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
)

// smallSyncFleet is the number of devices that have registered and synced
// with the server before BenchmarkSmallSync measures: the server of a
// fleet, not an empty one.
const smallSyncFleet = 50

// BenchmarkSmallSync measures one small sync: a device saves one row and
// calls SyncNow, against a real server on loopback (SQLite in a temp dir)
// with smallSyncFleet other devices that have synced. Device and server
// run in this process; a CPU profile (-cpuprofile) separates them by call
// tree and by the label side (device or server). Built
// with -tags sqlite_trace, it also reports the SQL statements each side
// runs per sync (device-stmts/op, server-stmts/op).
func BenchmarkSmallSync(b *testing.B) {
	stmts := countStatements(b)
	reg := testkit.Registry(b)
	// Goroutines inherit the labels of the one that starts them: the
	// server's (its listener's, its connections', its SQLite calls') carry
	// side=server in a CPU profile, the devices' side=device.
	pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels("side", "server")))
	srv := testkit.NewServer(b, reg, server.Options{})
	pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels("side", "device")))
	defer pprof.SetGoroutineLabels(ctx)
	dir := b.TempDir()
	for i := range smallSyncFleet {
		d := testkit.NewDevice(b, reg, srv.URL, testkit.DeviceOptions{Path: filepath.Join(dir, fmt.Sprintf("fleet-%d.db", i))})
		c := testkit.Customer{Name: fmt.Sprintf("fleet %d", i)}
		if err := d.DB.Save(ctx, &c); err != nil {
			b.Fatal(err)
		}
		d.Sync(b)
	}
	d := testkit.NewDevice(b, reg, srv.URL, testkit.DeviceOptions{Path: filepath.Join(dir, "device.db")})
	d.Sync(b)
	// A few syncs before the clock starts: the first ones after the
	// fleet's pull the fleet's rows.
	for range 3 {
		saveAndSync(b, d, -1)
	}
	stmts.reset()
	b.ReportAllocs()
	b.ResetTimer()
	stopProfile := profileCPU(b)
	cpu0 := proctime.Used()
	for i := range b.N {
		saveAndSync(b, d, i)
	}
	b.StopTimer()
	stopProfile()
	b.ReportMetric(float64(proctime.Used()-cpu0)/float64(b.N), "cpu-ns/op")
	stmts.report(b)
}

// profileCPU starts a CPU profile of the measured syncs, setup left out,
// into the file SMALLSYNC_CPUPROFILE names, if any, and returns the
// function that stops it.
func profileCPU(b *testing.B) (stop func()) {
	path := os.Getenv("SMALLSYNC_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// saveAndSync saves one new customer on d and syncs it.
func saveAndSync(b *testing.B, d *testkit.Device, i int) {
	c := testkit.Customer{Name: fmt.Sprintf("customer %d", i)}
	if err := d.DB.Save(ctx, &c); err != nil {
		b.Fatal(err)
	}
	rep, err := d.Co.SyncNow(ctx)
	if err != nil {
		b.Fatalf("sync %d: %v", i, err)
	}
	if rep.Pushed["customers"] != 1 {
		b.Fatalf("sync %d pushed %v, want 1 customer", i, rep.Pushed)
	}
}
