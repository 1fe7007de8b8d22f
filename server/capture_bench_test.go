package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// BenchmarkCapturePush measures what the capture triggers cost a device's
// push, on SQLite: sessions of 1,000 new rows, and of 1,000 updated rows,
// each pushed and committed in one request, to a store with capture off
// and to one with capture on, in turn (so that a busy machine slows both
// alike). It reports both rates and on/off, the ratio of their times.
//
//	go test ./server -run '^$' -bench CapturePush -benchtime 40x
func BenchmarkCapturePush(b *testing.B) {
	for _, update := range []bool{false, true} {
		b.Run(fmt.Sprintf("update=%v", update), func(b *testing.B) {
			off, on := newPusher(b, false, update), newPusher(b, true, update)
			var took [2]time.Duration
			for n := range b.N {
				for i, p := range []*pusher{off, on} {
					took[i] += p.push(b, n)
				}
			}
			rows := float64(b.N * captureRows)
			b.ReportMetric(rows/took[0].Seconds(), "off-rows/s")
			b.ReportMetric(rows/took[1].Seconds(), "on-rows/s")
			b.ReportMetric(took[1].Seconds()/took[0].Seconds(), "on/off")
		})
	}
}

// captureRows is the size of BenchmarkCapturePush's sessions.
const captureRows = 1000

// pusher pushes sessions to a store of its own.
type pusher struct {
	store   server.Store
	update  bool
	version int64 // of the last commit, which updated rows are based on
}

func newPusher(b *testing.B, capture, update bool) *pusher {
	ctx := context.Background()
	store := stores.Open(b, stores.SQLite, kindsSchema, stores.Options{})
	if err := store.(server.Capturer).CaptureExternal(ctx, capture); err != nil {
		b.Fatal(err)
	}
	if err := store.RegisterDevice(ctx, ada, server.Registration{Device: "d1"}, server.Limits{}); err != nil {
		b.Fatal(err)
	}
	return &pusher{store: store, update: update}
}

// push pushes and commits session n and returns how long it took.
func (p *pusher) push(b *testing.B, n int) time.Duration {
	rows := make([]wire.Row, captureRows)
	for i := range rows {
		id := fmt.Sprintf("r-%d-%d", n, i)
		if p.update {
			id = fmt.Sprintf("r-%d", i)
		}
		rows[i] = parent(id, "name", wire.FormatStamp(1700000000000+int64(n), 0, "d1"))
		if p.update && n > 0 {
			rows[i].Base = p.version
		}
	}
	start := time.Now()
	c, err := p.store.Push(context.Background(), ada, "d1", fmt.Sprintf("s-%d", n), 0, rows,
		server.PushOptions{Open: true, Commit: &server.LastBatch{Seq: 0}, Resolve: lww})
	if err != nil {
		b.Fatal(err)
	}
	p.version = c.Version
	return time.Since(start)
}
