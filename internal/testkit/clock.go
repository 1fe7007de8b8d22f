package testkit

import (
	"sync"
	"time"
)

// Clock is a fake clock for the time rules of a server and its store
// (server.Options.Now and the stores' Options.Now): it starts at the real
// time and moves only by Advance, so tests of expiry, activity and
// retention move time instead of sleeping. It is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at the current time.
func NewClock() *Clock { return &Clock{now: time.Now()} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock d forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
