package localdb

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A Stamp is a hybrid logical clock reading in text form:
// 13 digits of physical milliseconds, a dot, 6 digits of counter, a dot,
// and the device id. Text order is causal order, and ties between devices
// are broken by the device id, so every replica orders stamps the same way.
type Stamp = string

const maxCounter = 999999

// MaxStampAhead is how far ahead of the wall clock an observed stamp may
// be for the clock to move past it. A stamp further ahead (a device whose
// clock is years off, a forged stamp) is not followed: the clock would
// otherwise make every later stamp of this device lose or win wrongly, or
// overflow the stamp's 13 digits. Servers re-stamp stamps that are more
// than their MaxClockSkew ahead, so what a device pulls stays well within.
const MaxStampAhead = 24 * time.Hour

// clock is a hybrid logical clock. Its readings never go backwards, even
// when the wall clock does, and move past every stamp it has observed.
type clock struct {
	mu      sync.Mutex
	now     func() time.Time
	device  string
	physMS  int64
	counter int64
}

// parseStamp returns the physical milliseconds and counter of a stamp.
func parseStamp(s string) (ms, counter int64, err error) {
	parts := strings.SplitN(s, ".", 3)
	if len(parts) != 3 || len(parts[0]) != 13 || len(parts[1]) != 6 {
		return 0, 0, fmt.Errorf("malformed clock stamp %q", s)
	}
	if ms, err = strconv.ParseInt(parts[0], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("malformed clock stamp %q", s)
	}
	if counter, err = strconv.ParseInt(parts[1], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("malformed clock stamp %q", s)
	}
	return ms, counter, nil
}

// stampTime returns the wall-clock time a stamp carries, or the zero time
// for a malformed one.
func stampTime(s string) time.Time {
	ms, _, err := parseStamp(s)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func (c *clock) format() Stamp {
	return fmt.Sprintf("%013d.%06d.%s", c.physMS, c.counter, c.device)
}

// Now returns a new stamp, later than every stamp returned or observed before.
func (c *clock) Now() Stamp {
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
func (c *clock) sane(s Stamp) bool {
	ms, _, err := parseStamp(s)
	return err == nil && strings.HasSuffix(s, "."+c.device) && len(s) == 13+1+6+1+len(c.device) &&
		ms <= c.now().Add(MaxStampAhead).UnixMilli()
}

func (c *clock) tick() {
	c.counter++
	if c.counter > maxCounter {
		c.physMS++
		c.counter = 0
	}
}

// Observe moves the clock past a stamp received from elsewhere. Malformed
// stamps, and stamps more than MaxStampAhead ahead of the wall clock, are
// ignored.
func (c *clock) Observe(s Stamp) {
	ms, counter, err := parseStamp(s)
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
func (c *clock) last() Stamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.format()
}
