package localdb

import (
	"sync"
	"time"

	"github.com/tethersync/tether/wire"
)

// MaxStampAhead is how far ahead of the wall clock an observed stamp may
// be for the clock to move past it. A stamp further ahead (a device whose
// clock is years off, a forged stamp) is not followed: the clock would
// otherwise make every later stamp of this device lose or win wrongly, or
// overflow the stamp's 13 digits. Servers re-stamp stamps that are more
// than their MaxClockSkew ahead, so what a device pulls stays well within.
const MaxStampAhead = 24 * time.Hour

// clock is a hybrid logical clock, whose readings are clock stamps
// (wire.FormatStamp) of this device. Its readings never go backwards, even
// when the wall clock does, and move past every stamp it has observed.
type clock struct {
	mu      sync.Mutex
	now     func() time.Time
	device  string
	physMS  int64
	counter int64
}

// stampTime returns the wall-clock time a stamp carries, or the zero time
// for a malformed one.
func stampTime(s string) time.Time {
	ms, _, _, err := wire.ParseStamp(s)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func (c *clock) format() string {
	return wire.FormatStamp(c.physMS, c.counter, c.device)
}

// Now returns a new stamp, later than every stamp returned or observed before.
func (c *clock) Now() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	wall := c.now().UnixMilli()
	if wall > c.physMS {
		c.physMS, c.counter = wall, 0
	} else {
		c.tick()
	}
	return c.format()
}

// sane reports whether a stamp of this device is one the clock could
// have made: well formed, its own, and not beyond MaxStampAhead.
func (c *clock) sane(s string) bool {
	ms, _, device, err := wire.ParseStamp(s)
	return err == nil && device == c.device && ms <= c.now().Add(MaxStampAhead).UnixMilli()
}

func (c *clock) tick() {
	c.counter++
	if c.counter > wire.MaxStampCounter {
		c.physMS++
		c.counter = 0
	}
}

// Observe moves the clock past a stamp received from elsewhere. Malformed
// stamps, and stamps more than MaxStampAhead ahead of the wall clock, are
// ignored.
func (c *clock) Observe(s string) {
	ms, counter, _, err := wire.ParseStamp(s)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ms > c.now().Add(MaxStampAhead).UnixMilli() {
		return
	}
	if ms > c.physMS || (ms == c.physMS && counter > c.counter) {
		c.physMS, c.counter = ms, counter
	}
}

// last returns the latest reading, for persisting.
func (c *clock) last() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.format()
}
