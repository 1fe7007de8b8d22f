package coordinator

import (
	"context"
	"fmt"

	"github.com/tethersync/tether/wire"
)

// rebuild reads the server's snapshot page by page into the database
// (resumable: each page is stored with its position), then ends the
// rebuild and leaves the pull to go on from where the snapshot started.
func (c *Coordinator) rebuild(ctx context.Context, r *run, rep *Report) error {
	cursor, _, err := c.store.RebuildCursor(ctx)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	done, total := 0, 0
	c.report(Progress{Phase: PhaseRebuild})
	for range 1 << 30 { // ends with the snapshot's last page
		if !r.enter() {
			return fmt.Errorf("sync: stopped during the rebuild: %w", context.Canceled)
		}
		page, err := c.api.Snapshot(ctx, c.db.DeviceID(), cursor, wire.BatchSize(c.opts.PullBatchSize))
		if err == nil {
			_, err = c.store.ApplySnapshot(ctx, page.Rows, page.Cursor)
		}
		r.leave()
		if err != nil {
			return fmt.Errorf("sync: rebuild: %w", err)
		}
		if page.Total > 0 {
			total = page.Total
		}
		done += len(page.Rows)
		for _, row := range page.Rows {
			rep.Pulled[row.Table]++
		}
		c.report(Progress{Phase: PhaseRebuild, Done: done, Total: max(total, done)})
		cursor = page.Cursor
		if !page.More {
			if _, err := c.store.FinishRebuild(ctx, page.Resume); err != nil {
				return fmt.Errorf("sync: %w", err)
			}
			rep.Rebuilt = true
			return nil
		}
		c.safePoint()
	}
	return fmt.Errorf("sync: rebuild did not end")
}
