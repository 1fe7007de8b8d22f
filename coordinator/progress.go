package coordinator

import (
	"fmt"
	"time"
)

// Phases of a sync, reported in Progress.
const (
	PhaseConnect = "connect"
	PhasePush    = "push"
	PhasePull    = "pull"
	// PhaseRebuild is a rebuild from the server's snapshot, for a device
	// that was away longer than the server keeps deletions: Done counts
	// the rows received, Total is the tenant's rows.
	PhaseRebuild = "rebuild"
	PhaseDone    = "done"
	// PhaseRetry is a wait before the sync tries again, after a transient
	// failure (a 5xx, a 429, a timeout): Attempt, Wait and Err say which
	// attempt comes, when, and why the last one failed. One is reported
	// before each retry; the attempt that follows starts at PhaseConnect.
	PhaseRetry = "retry"
)

// Progress is a progress report for a progress bar.
//
// Done and Total count the rows of the current phase: they start again at
// 0 when the pull begins, and when a failed attempt is retried. Total is
// never below Done. For the push, Total is the number of dirty rows when
// the push starts; rows saved during the push that go up in the same run
// raise it (to Done), so it can grow but Done/Total never exceeds 1. For
// the pull Total is 0: the number of rows to come is not known.
//
// A UI draws it so: during PhaseConnect an indeterminate bar (or empty);
// during PhasePush with Total > 0 a bar filled to Done/Total, which may move
// back a little when Total grows; during PhasePull an indeterminate bar
// with the count Done beside it; at PhaseDone a full bar. Only PhaseDone
// (or the return of SyncNow) says that a sync finished.
type Progress struct {
	Phase string
	Table string
	// Done counts the rows of the phase handled so far.
	Done int
	// Total is the number of rows of the phase, at least Done; 0 when
	// unknown, as for a pull.
	Total int

	// Attempt, during PhaseRetry, is the number of the attempt that
	// follows the wait: 2 for the first retry of a sync.
	Attempt int
	// Wait, during PhaseRetry, is how long the sync waits before that
	// attempt (the backoff, or the server's Retry-After when longer).
	Wait time.Duration
	// Err, during PhaseRetry, is the error of the attempt that failed.
	Err error
}

// String describes p in a line for a status page or a progress bar's
// label, as "retrying in 8s (attempt 4): 503 unavailable" during
// PhaseRetry, "push 40/100", "pull 250" or the phase's name otherwise.
func (p Progress) String() string {
	switch {
	case p.Phase == PhaseRetry:
		return fmt.Sprintf("retrying in %s (attempt %d): %v", roundWait(p.Wait), p.Attempt, p.Err)
	case p.Total > 0:
		return fmt.Sprintf("%s %d/%d", p.Phase, p.Done, p.Total)
	case p.Done > 0:
		return fmt.Sprintf("%s %d", p.Phase, p.Done)
	}
	return p.Phase
}

// roundWait rounds a wait for people: to the second from a second on, to
// the millisecond below.
func roundWait(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

// report makes p the progress of the run under way, and reports it to
// Options.OnProgress.
func (c *Coordinator) report(p Progress) {
	c.mu.Lock()
	c.progress = p
	c.mu.Unlock()
	if c.opts.OnProgress != nil {
		c.opts.OnProgress(p)
	}
}

// onBatch is called by the push engine after each acknowledged batch: a
// safe point.
func (c *Coordinator) onBatch(table string, n int) {
	c.advance(table, n)
	c.safePoint()
}

// onPage is called by the pull engine after each applied page: a safe
// point.
func (c *Coordinator) onPage(rows map[string]int) {
	for table, n := range rows {
		c.advance(table, n)
	}
	c.safePoint()
}

// advance adds n handled rows of table to the progress, raising the total
// when rows saved during the phase made it too low.
func (c *Coordinator) advance(table string, n int) {
	c.mu.Lock()
	p := c.progress
	p.Table, p.Done = table, p.Done+n
	if p.Phase == PhasePush && p.Total < p.Done {
		p.Total = p.Done
	}
	c.mu.Unlock()
	c.report(p)
}

// safePoint stops the current run there if it is stopping.
func (c *Coordinator) safePoint() {
	c.mu.Lock()
	r := c.cur
	c.mu.Unlock()
	if r != nil {
		r.safePoint()
	}
}
