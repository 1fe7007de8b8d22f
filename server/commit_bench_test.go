package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tethersync/tether/internal/proctime"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// BenchmarkSessionCommit measures a large session on each store: 100
// batches of 1,000 new rows staged one request each, then committed. It
// reports the staging and the commit apart, in ms per session.
//
//	go test ./server -run '^$' -bench SessionCommit -benchtime 3x
func BenchmarkSessionCommit(b *testing.B) {
	const batches, size = 100, 1000
	for _, kind := range stores.All {
		b.Run(kind, func(b *testing.B) {
			ctx := context.Background()
			store := stores.Open(b, kind, kindsSchema, stores.Options{})
			if err := store.RegisterDevice(ctx, ada, server.Registration{Device: "d1"}, server.Limits{}); err != nil {
				b.Fatal(err)
			}
			var stage, commit, stageCPU, commitCPU time.Duration
			for n := range b.N {
				session := fmt.Sprintf("s-%d", n)
				start, cpu0 := time.Now(), proctime.Used()
				for seq := range batches {
					rows := make([]wire.Row, size)
					for i := range rows {
						rows[i] = parent(fmt.Sprintf("r-%d-%d-%d", n, seq, i), "name", wire.FormatStamp(1700000000000+int64(n), 0, "d1"))
					}
					if _, err := store.Push(ctx, ada, "d1", session, seq, rows, server.PushOptions{Open: seq == 0, Attempt: 1}); err != nil {
						b.Fatal(err)
					}
				}
				mid, cpu1 := time.Now(), proctime.Used()
				c, err := store.Commit(ctx, ada, "d1", session, lww, server.Limits{}, nil)
				if err != nil {
					b.Fatal(err)
				}
				if c.Applied != batches*size {
					b.Fatalf("Applied=%d, want %d", c.Applied, batches*size)
				}
				stage += mid.Sub(start)
				commit += time.Since(mid)
				stageCPU += cpu1 - cpu0
				commitCPU += proctime.Used() - cpu1
			}
			b.ReportMetric(float64(stage.Milliseconds())/float64(b.N), "stage-ms")
			b.ReportMetric(float64(commit.Milliseconds())/float64(b.N), "commit-ms")
			b.ReportMetric(float64(stageCPU.Milliseconds())/float64(b.N), "stage-cpu-ms")
			b.ReportMetric(float64(commitCPU.Milliseconds())/float64(b.N), "commit-cpu-ms")
		})
	}
}

// BenchmarkOneRequestPush measures the small sync's server side on each
// store: a session of one changed row, opened, staged and committed in one
// request, against a store holding the rows of 50 devices.
//
//	go test ./server -run '^$' -bench OneRequestPush -benchtime 500x
func BenchmarkOneRequestPush(b *testing.B) {
	for _, kind := range stores.All {
		b.Run(kind, func(b *testing.B) {
			ctx := context.Background()
			store := stores.Open(b, kind, kindsSchema, stores.Options{})
			for d := range 50 {
				if err := store.RegisterDevice(ctx, ada, server.Registration{Device: fmt.Sprintf("d%d", d)}, server.Limits{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			cpu := proctime.Used()
			for n := range b.N {
				dev := fmt.Sprintf("d%d", n%50)
				row := parent(fmt.Sprintf("r-%d", n), "name", wire.FormatStamp(1700000000000+int64(n), 0, dev))
				if _, err := store.Push(ctx, ada, dev, fmt.Sprintf("s-%d", n), 0, []wire.Row{row},
					server.PushOptions{Open: true, Commit: &server.LastBatch{Seq: 0}, Resolve: lww}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((proctime.Used()-cpu).Microseconds())/float64(b.N), "cpu-us/op")
		})
	}
}
