package server

import (
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxLimiters bounds the number of tokens tracked at once; past it, the
// limiters idle for longest are forgotten.
const maxLimiters = 100_000

// limiters keeps one token bucket per key: per bearer token for the
// request rate, per client address for failed authentications.
type limiters struct {
	limit rate.Limit
	burst int
	now   func() time.Time

	mu sync.Mutex
	m  map[string]*tokenLimiter
}

type tokenLimiter struct {
	l    *rate.Limiter
	seen time.Time
}

// newLimiters returns limiters of limit per second with bursts of burst,
// by the clock now.
func newLimiters(limit rate.Limit, burst int, now func() time.Time) *limiters {
	return &limiters{limit: limit, burst: burst, now: now, m: map[string]*tokenLimiter{}}
}

// wait takes one request from the bucket of r's token, and returns how long
// the caller must wait when the bucket is empty (nothing is taken then), or
// 0 when the request may go ahead.
func (ls *limiters) wait(r *http.Request) time.Duration {
	if ls.limit <= 0 {
		return 0
	}
	tok, err := BearerToken(r)
	if err != nil {
		return 0 // authenticated some other way: not limited per token
	}
	return ls.take(tok)
}

// bucket returns key's limiter, made on first use.
func (ls *limiters) bucket(key string, now time.Time) *rate.Limiter {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	tl := ls.m[key]
	if tl == nil {
		if len(ls.m) >= maxLimiters {
			ls.evict(now)
		}
		tl = &tokenLimiter{l: rate.NewLimiter(ls.limit, ls.burst)}
		ls.m[key] = tl
	}
	tl.seen = now
	return tl.l
}

// empty returns how long until key's bucket holds a token again, or 0 when
// it holds one now; it takes nothing.
func (ls *limiters) empty(key string) time.Duration {
	if ls.limit <= 0 {
		return 0
	}
	now := ls.now()
	tokens := ls.bucket(key, now).TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) / float64(ls.limit) * float64(time.Second))
}

// take takes one token from key's bucket, and returns how long the caller
// must wait when it is empty (nothing is taken then), or 0.
func (ls *limiters) take(key string) time.Duration {
	if ls.limit <= 0 {
		return 0
	}
	now := ls.now()
	res := ls.bucket(key, now).ReserveN(now, 1)
	if !res.OK() {
		return time.Second
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d
	}
	return 0
}

// evict forgets the limiters of tokens unseen for a minute, or if none,
// half of them. Called with ls.mu held.
func (ls *limiters) evict(now time.Time) {
	for k, tl := range ls.m {
		if now.Sub(tl.seen) > time.Minute {
			delete(ls.m, k)
		}
	}
	for k := range ls.m {
		if len(ls.m) < maxLimiters/2 {
			break
		}
		delete(ls.m, k)
	}
}
