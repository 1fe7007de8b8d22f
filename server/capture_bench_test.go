package server_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// BenchmarkCapturePush measures what the capture triggers cost a device's
// push: sessions of 1,000 new rows and of 1,000 updated rows, each pushed
// and committed in one request, on SQLite, with capture off and on.
//
//	go test ./server -run '^$' -bench CapturePush -benchtime 20x
func BenchmarkCapturePush(b *testing.B) {
	for _, on := range []bool{false, true} {
		for _, update := range []bool{false, true} {
			b.Run(fmt.Sprintf("capture=%v/update=%v", on, update), func(b *testing.B) {
				ctx := context.Background()
				store := stores.Open(b, stores.SQLite, kindsSchema, stores.Options{})
				if err := store.(server.Capturer).CaptureExternal(ctx, on); err != nil {
					b.Fatal(err)
				}
				if err := store.RegisterDevice(ctx, ada, server.Registration{Device: "d1"}, server.Limits{}); err != nil {
					b.Fatal(err)
				}
				const rows = 1000
				var version int64 // of the last commit, which updated rows are based on
				batch := func(n int) []wire.Row {
					out := make([]wire.Row, rows)
					for i := range out {
						id := fmt.Sprintf("r-%d-%d", n, i)
						if update {
							id = fmt.Sprintf("r-%d", i)
						}
						out[i] = parent(id, "name", wire.FormatStamp(1700000000000+int64(n), 0, "d1"))
						if update && n > 0 {
							out[i].Base = version
						}
					}
					return out
				}
				b.ResetTimer()
				for n := range b.N {
					b.StopTimer()
					rs := batch(n)
					b.StartTimer()
					c, err := store.Push(ctx, ada, "d1", fmt.Sprintf("s-%d", n), 0, rs, server.PushOptions{Open: true, Commit: &server.LastBatch{Seq: 0}, Resolve: lww})
					if err != nil {
						b.Fatal(err)
					}
					version = c.Version
				}
				b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
			})
		}
	}
}
