package server

import (
	"fmt"

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
)

// Resolver decides a conflict on table between the server's current row and
// a pushed row. It reports whether the pushed row wins, and the strategy used.
type Resolver func(table string, server, pushed wire.Row) (clientWins bool, strategy Strategy)

// resolver returns the Resolver for per-table strategies.
func resolver(strategies map[string]Strategy) Resolver {
	return func(table string, server, pushed wire.Row) (bool, Strategy) {
		s := strategies[table]
		switch s {
		case ServerWins:
			return false, s
		case ClientWins:
			return true, s
		default:
			return pushed.HLC > server.HLC, LastWriterWins
		}
	}
}

func validStrategy(s Strategy) error {
	switch s {
	case LastWriterWins, ServerWins, ClientWins:
		return nil
	}
	return fmt.Errorf("unknown strategy %q", s)
}
