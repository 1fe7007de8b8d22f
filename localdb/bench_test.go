package localdb_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tethersync/tether/internal/proctime"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/wire"
)

const page = 1000

func notePage(prefix string, version int64) []wire.Row {
	rows := make([]wire.Row, page)
	for i := range rows {
		rows[i] = wire.Row{Table: "notes", ID: fmt.Sprintf("%s-%06d", prefix, i), Version: version,
			HLC: "0001700000000.000000.server-device", ModifiedBy: "ada",
			Values: map[string]any{"title": "a note of average length", "body": "and a body that says a little more",
				"at": "2026-11-23T08:00:00.000000000Z"}}
	}
	return rows
}

// BenchmarkApplyChanges applies pulled pages of 1,000 new rows.
func BenchmarkApplyChanges(b *testing.B) {
	db := open(b, filepath.Join(b.TempDir(), "app.db"))
	pages := make([][]wire.Row, b.N)
	for i := range pages {
		pages[i] = notePage(fmt.Sprint(i), int64(i+1))
	}
	b.ResetTimer()
	cpu := proctime.Used()
	for i := range b.N {
		if _, err := db.Syncer().ApplyChanges(ctx, pages[i], fmt.Sprint(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*page)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(proctime.Used()-cpu)/float64(b.N*page), "cpu-ns/row")
}

// BenchmarkNextDirty reads 1,000 dirty rows among 20,000 clean ones: the
// dirty index keeps it independent of the clean rows.
func BenchmarkNextDirty(b *testing.B) {
	db := open(b, filepath.Join(b.TempDir(), "app.db"))
	for i := range 20 {
		if _, err := db.Syncer().ApplyChanges(ctx, notePage(fmt.Sprint("clean", i), 1), "c"); err != nil {
			b.Fatal(err)
		}
	}
	saveNotes(b, db, page)
	b.ResetTimer()
	for range b.N {
		batch, err := db.Syncer().NextDirty(ctx, localdb.PushPos{}, page)
		if err != nil || len(batch.Rows) != page {
			b.Fatalf("NextDirty: %d rows, %v", len(batch.Rows), err)
		}
	}
	b.ReportMetric(float64(b.N*page)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkSave saves 1,000 new rows in one transaction.
func BenchmarkSave(b *testing.B) {
	db := open(b, filepath.Join(b.TempDir(), "app.db"))
	b.ResetTimer()
	for range b.N {
		saveNotes(b, db, page)
	}
	b.ReportMetric(float64(b.N*page)/b.Elapsed().Seconds(), "rows/s")
}

func saveNotes(b *testing.B, db *localdb.DB, n int) {
	err := db.Update(ctx, func(tx *localdb.Tx) error {
		for range n {
			body := "and a body that says a little more"
			note := Note{Title: "a note of average length", Body: &body, At: time.Now()}
			if err := tx.Save(ctx, &note); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSaveOne saves one new row a transaction, as an app's form does
// before a small sync: the fixed cost of a write transaction.
func BenchmarkSaveOne(b *testing.B) {
	db := open(b, filepath.Join(b.TempDir(), "app.db"))
	b.ResetTimer()
	for range b.N {
		saveNotes(b, db, 1)
	}
}
