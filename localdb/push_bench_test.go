package localdb_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/tethersync/tether/internal/proctime"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/wire"
)

// BenchmarkMarkSentFinishPush pushes 100,000 dirty rows on the device's
// side: each batch of 1,000 read (NextDirty, not timed) and recorded as
// acknowledged (MarkSent), then the commit's answer applied (FinishPush).
// It reports the time of MarkSent and FinishPush per 100,000 rows, wall
// clock and process CPU time (on a shared machine the steadier of the two).
func BenchmarkMarkSentFinishPush(b *testing.B) {
	const rows = 100_000
	var mark, finish, markCPU, finishCPU time.Duration
	for i := range b.N {
		b.StopTimer()
		db := open(b, filepath.Join(b.TempDir(), "app.db"))
		for range rows / page {
			saveNotes(b, db, page)
		}
		s := db.Syncer()
		if err := s.BeginPush(ctx, "s1"); err != nil {
			b.Fatal(err)
		}
		st := localdb.PushState{Session: "s1"}
		sent := 0
		for {
			batch, err := s.NextDirty(ctx, st.Pos, page)
			if err != nil {
				b.Fatal(err)
			}
			if len(batch.Rows) == 0 {
				break
			}
			sent += len(batch.Rows)
			st.Seq++
			st.Pos = batch.Next
			b.StartTimer()
			t0, c0 := time.Now(), proctime.Used()
			if err := s.MarkSent(ctx, batch, st); err != nil {
				b.Fatal(err)
			}
			mark += time.Since(t0)
			markCPU += proctime.Used() - c0
			b.StopTimer()
		}
		b.StartTimer()
		t0, c0 := time.Now(), proctime.Used()
		if err := s.FinishPush(ctx, wire.Commit{Version: int64(i + 1)}, true); err != nil {
			b.Fatal(err)
		}
		finish += time.Since(t0)
		finishCPU += proctime.Used() - c0
		b.StopTimer()
		if n, err := db.Pending(ctx); err != nil || n != 0 || sent != rows {
			b.Fatalf("after FinishPush: %d pending, %d sent, %v; want 0 pending, %d sent", n, sent, err, rows)
		}
		db.Close()
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(mark.Seconds()*1000/n, "marksent-ms/op")
	b.ReportMetric(finish.Seconds()*1000/n, "finishpush-ms/op")
	b.ReportMetric(markCPU.Seconds()*1000/n, "marksent-cpu-ms/op")
	b.ReportMetric(finishCPU.Seconds()*1000/n, "finishpush-cpu-ms/op")
}
