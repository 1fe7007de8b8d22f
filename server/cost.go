package server

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/tethersync/tether/wire"
)

// Expensive requests, digests and snapshot pages, are limited by what they
// cost, not only by their number: a token's rate limit counts requests,
// and one digest of many columns over many rows costs what thousands of
// pulls do. They share Options.MaxCost units of work at once; a request
// that cannot get its cost within Options.CostWait is refused with 429.

// snapshotRowsPerCost is how many rows of a snapshot page's limit cost one
// unit, as much as one column of a digest.
const snapshotRowsPerCost = 100

// costs is the server-wide budget of expensive work under way. It is safe
// for concurrent use.
type costs struct {
	sem      *semaphore.Weighted
	capacity int64
	wait     time.Duration
}

// newCosts returns a budget of capacity units, which a request waits for
// at most wait.
func newCosts(capacity int64, wait time.Duration) *costs {
	return &costs{sem: semaphore.NewWeighted(capacity), capacity: capacity, wait: wait}
}

// acquire takes cost units (at most the whole budget: a request that
// costs more runs alone) for the request what, and returns the function
// that gives them back. When they are not free within the wait, it sets
// Retry-After and returns an error wrapping wire.ErrRateLimited; when ctx
// ends first, ctx's error.
func (c *costs) acquire(ctx context.Context, w http.ResponseWriter, what string, cost int64) (release func(), err error) {
	cost = min(max(cost, 1), c.capacity)
	wctx, cancel := context.WithTimeout(ctx, c.wait)
	defer cancel()
	if err := c.sem.Acquire(wctx, cost); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", what, ctx.Err())
		}
		secs := max(1, int((c.wait+time.Second-1)/time.Second))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		return nil, fmt.Errorf("%s costs %d of the server's %d units of expensive work at once (MaxCost), which are taken; retry in %ds: %w",
			what, cost, c.capacity, secs, wire.ErrRateLimited)
	}
	return func() { c.sem.Release(cost) }, nil
}

// try takes cost units (as acquire) when they are free now, and returns
// the function that gives them back, or false.
func (c *costs) try(cost int64) (release func(), ok bool) {
	cost = min(max(cost, 1), c.capacity)
	if !c.sem.TryAcquire(cost) {
		return nil, false
	}
	return func() { c.sem.Release(cost) }, true
}

// snapshotCost is the cost of a snapshot page of limit rows.
func snapshotCost(limit int) int64 {
	return int64((limit + snapshotRowsPerCost - 1) / snapshotRowsPerCost)
}
