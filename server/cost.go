package server

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
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

// costs is the server-wide budget of expensive work under way, of which
// one tenant holds at most a quarter at once: a member of a large tenant
// who asks for digest after digest spends their tenant's share, not
// everyone's. It is safe for concurrent use.
type costs struct {
	sem             *semaphore.Weighted
	capacity, share int64
	wait            time.Duration

	mu   sync.Mutex
	held map[string]int64 // units each tenant holds; no zero entries
}

// newCosts returns a budget of capacity units, which a request waits for
// at most wait.
func newCosts(capacity int64, wait time.Duration) *costs {
	return &costs{sem: semaphore.NewWeighted(capacity), capacity: capacity, share: max(1, capacity/4), wait: wait,
		held: map[string]int64{}}
}

// acquire takes cost units (at most the tenant's share: a request that
// costs more runs with the share) for tenant's request what, and returns
// the function that gives them back. When the tenant holds its share
// already, or the units are not free within the wait, it sets Retry-After
// and returns an error wrapping wire.ErrRateLimited; when ctx ends first,
// ctx's error.
func (c *costs) acquire(ctx context.Context, w http.ResponseWriter, tenant, what string, cost int64) (release func(), err error) {
	cost = min(max(cost, 1), c.share)
	secs := max(1, int((c.wait+time.Second-1)/time.Second))
	if !c.take(tenant, cost) {
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		return nil, fmt.Errorf("%s costs %d units of expensive work, and the tenant's other requests hold its share (%d of the server's %d units, MaxCost); retry in %ds: %w",
			what, cost, c.share, c.capacity, secs, wire.ErrRateLimited)
	}
	wctx, cancel := context.WithTimeout(ctx, c.wait)
	defer cancel()
	if err := c.sem.Acquire(wctx, cost); err != nil {
		c.give(tenant, cost)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", what, ctx.Err())
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		return nil, fmt.Errorf("%s costs %d of the server's %d units of expensive work at once (MaxCost), which are taken; retry in %ds: %w",
			what, cost, c.capacity, secs, wire.ErrRateLimited)
	}
	return func() { c.sem.Release(cost); c.give(tenant, cost) }, nil
}

// try takes cost units for tenant (as acquire) when they are free now,
// and returns the function that gives them back, or false.
func (c *costs) try(tenant string, cost int64) (release func(), ok bool) {
	cost = min(max(cost, 1), c.share)
	if !c.take(tenant, cost) {
		return nil, false
	}
	if !c.sem.TryAcquire(cost) {
		c.give(tenant, cost)
		return nil, false
	}
	return func() { c.sem.Release(cost); c.give(tenant, cost) }, true
}

// take counts cost units more for tenant, unless that passes its share.
func (c *costs) take(tenant string, cost int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held[tenant]+cost > c.share {
		return false
	}
	c.held[tenant] += cost
	return true
}

// give gives back cost units of tenant's.
func (c *costs) give(tenant string, cost int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held[tenant] -= cost; c.held[tenant] <= 0 {
		delete(c.held, tenant)
	}
}

// snapshotCost is the cost of a snapshot page of limit rows.
func snapshotCost(limit int) int64 {
	return int64((limit + snapshotRowsPerCost - 1) / snapshotRowsPerCost)
}
