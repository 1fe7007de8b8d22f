package localdb_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/tethersync/tether/internal/proctime"
	"github.com/tethersync/tether/wire"
)

// BenchmarkPullStashed pulls a session of 10,000 rows that spans ten
// pages, as a first pull of a large push does: nine pages set aside, then
// applied with the tenth.
func BenchmarkPullStashed(b *testing.B) {
	db := open(b, filepath.Join(b.TempDir(), "app.db"))
	pages := make([][][]wire.Row, b.N)
	for i := range pages {
		for p := range 10 {
			pages[i] = append(pages[i], notePage(fmt.Sprint(i, "-", p), int64(i+1)))
		}
	}
	b.ResetTimer()
	cpu := proctime.Used()
	for i := range b.N {
		for p, rows := range pages[i] {
			cursor := fmt.Sprint(i, ".", p)
			if p < len(pages[i])-1 {
				if err := db.Syncer().StashChanges(ctx, wire.Changes{Changes: rows, Cursor: cursor}); err != nil {
					b.Fatal(err)
				}
				continue
			}
			if n, err := db.Syncer().ApplyChanges(ctx, rows, cursor); err != nil || n != 10*page {
				b.Fatalf("ApplyChanges=%d, %v; want %d rows", n, err, 10*page)
			}
		}
	}
	b.ReportMetric(float64(b.N*10*page)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(proctime.Used()-cpu)/float64(b.N*10*page), "cpu-ns/row")
}
