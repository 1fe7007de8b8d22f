package push

import (
	"errors"
	"fmt"
	"testing"

	"github.com/tethersync/tether/wire"
)

func TestOutcomeOf(t *testing.T) {
	refused := func(err error) error { return fmt.Errorf("send: %w", errors.Join(err, wire.ErrRefused)) }
	network := errors.New("connection reset")
	for _, tt := range []struct {
		name      string
		err       error
		seq, size int
		last      bool
		want      outcome
	}{
		{"taken", nil, 3, 10, false, acked},
		{"taken last", nil, 3, 10, true, acked},
		{"last lost on the way", network, 0, 10, true, failed},
		{"last too large but not refused", wire.ErrTooLarge, 0, 10, true, failed},
		{"last refused too large", refused(wire.ErrTooLarge), 0, 10, true, halve},
		{"too large", refused(wire.ErrTooLarge), 2, 10, false, halve},
		{"one row too large", refused(wire.ErrTooLarge), 2, 1, false, failed},
		{"session full", refused(wire.ErrSessionFull), 2, 10, false, full},
		{"first batch fills the session", refused(wire.ErrSessionFull), 0, 10, false, halve},
		{"one row fills the session", refused(wire.ErrSessionFull), 0, 1, false, failed},
		{"committed already", refused(wire.ErrConflict), 2, 10, false, committed},
		{"last, committed already", refused(wire.ErrConflict), 2, 10, true, committed},
		{"forbidden", refused(wire.ErrForbidden), 2, 10, false, failed},
		{"network", network, 2, 10, false, failed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := outcomeOf(tt.err, tt.seq, tt.size, tt.last); got != tt.want {
				t.Errorf("outcomeOf(%v, seq %d, size %d, last %v)=%d, want %d", tt.err, tt.seq, tt.size, tt.last, got, tt.want)
			}
		})
	}
}
