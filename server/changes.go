package server

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tethersync/tether/wire"
)

func (s *Server) changes(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error) {
	q := r.URL.Query()
	after, err := ParseCursor(q.Get("cursor"))
	if err != nil {
		return nil, err
	}
	limit := wire.DefaultBatchSize
	if l := q.Get("limit"); l != "" {
		limit, err = strconv.Atoi(l)
		if err != nil || limit < 1 || limit > wire.MaxBatchSize {
			return nil, fmt.Errorf("limit %q: want 1 to %d: %w", l, wire.MaxBatchSize, wire.ErrBadRequest)
		}
	}
	// A device names the push sessions it committed and has not pulled
	// past yet: what it pushed comes back only where the server changed it.
	// The pulling device, when it says: the store records how far it
	// pulled, which decides when tombstones may go.
	var echo Echo
	if r.Header.Get(wire.HeaderDevice) != "" {
		device, err := deviceOf(r)
		if err != nil {
			return nil, err
		}
		echo.Device = device
		// Whether a device is active is a question of days: its record
		// need not be written by every pull of a device that syncs often.
		echo.SeenEvery = min(s.opts.Limits.DeviceActivity/100, time.Minute)
	}
	if own := q.Get("own"); own != "" {
		if echo.Device == "" {
			return nil, fmt.Errorf("own sessions without a %s header: %w", wire.HeaderDevice, wire.ErrBadRequest)
		}
		echo.Sessions = map[string]bool{}
		for _, id := range strings.Split(own, ",") {
			if !deviceRE.MatchString(id) || len(echo.Sessions) == wire.MaxEchoSessions {
				return nil, fmt.Errorf("own: want at most %d session ids: %w", wire.MaxEchoSessions, wire.ErrBadRequest)
			}
			echo.Sessions[id] = true
		}
	}
	rows, next, more, err := s.store.Changes(ctx, p, after, limit, s.opts.MaxPageBytes, echo)
	if err != nil {
		return nil, err
	}
	if rows == nil {
		rows = []wire.Row{}
	}
	return wire.Changes{Changes: rows, Cursor: next.String(), More: more}, nil
}
