package server

import (
	"context"
	"fmt"
	"maps"

	"github.com/tethersync/tether/wire"
)

// Strategy names how a table resolves a conflict: a pushed row whose server
// row moved since the version the push was based on.
type Strategy string

// The strategies.
const (
	// LastWriterWins keeps the row with the later hybrid logical clock
	// stamp; equal physical times and counters are ordered by device id.
	// It is the default.
	LastWriterWins Strategy = "last-writer-wins"
	// ServerWins keeps the server row.
	ServerWins Strategy = "server-wins"
	// ClientWins applies the pushed row.
	ClientWins Strategy = "client-wins"
	// MergeColumns keeps both sides' edits when they changed different
	// columns of the row, and settles a column both changed by the later
	// clock stamp. A delete against an update is settled for the whole row
	// by the later stamp (or the table's DeletePolicy).
	MergeColumns Strategy = "merge-columns"
	// Custom is reported for conflicts decided by a ResolveFunc.
	Custom Strategy = "custom"
	// DeleteWins is reported when a table's DeletePolicy made a delete win
	// over an update.
	DeleteWins Strategy = "delete-wins"
)

// DeletePolicy says how a table settles a delete against an update.
type DeletePolicy string

// The delete policies.
const (
	// NewerWins treats a delete like any write: the table's strategy
	// decides, so a newer update brings a deleted row back. The default.
	NewerWins DeletePolicy = "newer-wins"
	// DeleteAlwaysWins makes a delete beat an update, whichever came
	// first and whatever the strategy.
	DeleteAlwaysWins DeletePolicy = "delete-wins"
)

// Conflict is what a ResolveFunc sees: both versions of a row, the version
// the pushed one was based on, and both clock stamps (in the rows' HLC).
type Conflict struct {
	Table string
	ID    string
	// Base is the server version the device's edit started from.
	Base int64
	// Server is the row as the server holds it now; Server.Version is
	// later than Base.
	Server wire.Row
	// Pushed is the device's row; Pushed.Changed lists the columns the
	// device changed since Base (nil: every column).
	Pushed wire.Row
	// ServerColumns maps each column to the server version that last
	// changed it: a column with a version above Base changed on the server
	// since the device's edit began.
	ServerColumns map[string]int64
}

// Resolution is a ResolveFunc's decision.
type Resolution struct {
	// Winner is wire.WinnerServer, wire.WinnerClient or wire.WinnerMerged.
	Winner string
	// Values and Deleted are the merged row, for wire.WinnerMerged. Values
	// must hold every column but id, in the table's kinds.
	Values  map[string]any
	Deleted bool
}

// ResolveFunc decides a conflict on one table. An error fails the whole
// commit (nothing of the session is applied) and is reported as a server
// error.
type ResolveFunc func(ctx context.Context, c Conflict) (Resolution, error)

// Resolver decides every conflict of a commit. Stores call it; Server
// builds it from Options.
type Resolver func(ctx context.Context, c Conflict) (Resolution, Strategy, error)

// resolver returns the Resolver for the per-table options.
func resolver(strategies map[string]Strategy, custom map[string]ResolveFunc, deletes map[string]DeletePolicy) Resolver {
	return func(ctx context.Context, c Conflict) (Resolution, Strategy, error) {
		if deletes[c.Table] == DeleteAlwaysWins && c.Server.Deleted != c.Pushed.Deleted {
			if c.Pushed.Deleted {
				return Resolution{Winner: wire.WinnerClient}, DeleteWins, nil
			}
			return Resolution{Winner: wire.WinnerServer}, DeleteWins, nil
		}
		if f := custom[c.Table]; f != nil {
			r, err := f(ctx, c)
			if err != nil {
				return Resolution{}, Custom, fmt.Errorf("resolve %s %q: %w", c.Table, c.ID, err)
			}
			switch r.Winner {
			case wire.WinnerServer, wire.WinnerClient:
			case wire.WinnerMerged:
				r.Values = maps.Clone(r.Values)
			default:
				return Resolution{}, Custom, fmt.Errorf("resolve %s %q: unknown winner %q", c.Table, c.ID, r.Winner)
			}
			return r, Custom, nil
		}
		s := strategies[c.Table]
		switch s {
		case ServerWins:
			return Resolution{Winner: wire.WinnerServer}, s, nil
		case ClientWins:
			return Resolution{Winner: wire.WinnerClient}, s, nil
		case MergeColumns:
			if !c.Server.Deleted && !c.Pushed.Deleted {
				return mergeColumns(c), s, nil
			}
		}
		if c.Pushed.HLC > c.Server.HLC {
			return Resolution{Winner: wire.WinnerClient}, LastWriterWins, nil
		}
		return Resolution{Winner: wire.WinnerServer}, LastWriterWins, nil
	}
}

// mergeColumns takes the server's row, and from the pushed row each column
// the device changed, unless the server changed it too since the device's
// base and its stamp is the later.
func mergeColumns(c Conflict) Resolution {
	changed := c.Pushed.Changed
	if changed == nil {
		for col := range c.Pushed.Values {
			changed = append(changed, col)
		}
	}
	vals := maps.Clone(c.Server.Values)
	for _, col := range changed {
		if c.ServerColumns[col] <= c.Base || c.Pushed.HLC > c.Server.HLC {
			vals[col] = c.Pushed.Values[col]
		}
	}
	return Resolution{Winner: wire.WinnerMerged, Values: vals}
}

func validStrategy(s Strategy) error {
	switch s {
	case LastWriterWins, ServerWins, ClientWins, MergeColumns:
		return nil
	}
	return fmt.Errorf("unknown strategy %q", s)
}
