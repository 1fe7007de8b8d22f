package push_test

import (
	"fmt"
	"testing"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/push"
	"github.com/tethersync/tether/server"
)

// BenchmarkPushInFlight pushes 20,000 rows in batches of 1,000 to a real
// server on loopback, with one and with two batches on the wire: run with
// -benchtime=Nx, the sub-benchmarks interleaved (-count) to compare them
// on a shared machine.
func BenchmarkPushInFlight(b *testing.B) {
	const rows = 20_000
	for _, inFlight := range []int{1, 2} {
		b.Run(fmt.Sprintf("inflight=%d", inFlight), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				ctx := b.Context()
				reg := testkit.Registry(b)
				srv := testkit.NewServer(b, reg, server.Options{})
				db, api := device(b, reg, srv.URL, nil, "")
				saveCustomers(b, db, rows)
				eng := push.New(db.Syncer(), api, push.Options{BatchSize: 1000, InFlight: inFlight})
				b.StartTimer()
				if _, err := eng.Push(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
