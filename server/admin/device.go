package admin

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"

	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
)

// deviceOut is the JSON of the device command.
type deviceOut struct {
	localdb.Info
	// Position is the version of Cursor; -1 before the first pull.
	Position int64 `json:"position"`
}

// runDevice inspects a device database file.
func runDevice(ctx context.Context, e *env, args []string) error {
	f := e.newFlags("device", false)
	n := f.Int("conflicts", 20, "show the latest N entries of the conflict log")
	// FILE may come before or after the flags.
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("device: %v: %w", err, ErrUsage)
	}
	if f.NArg() == 0 {
		return fmt.Errorf("device: give the database file: %w", ErrUsage)
	}
	path := f.Arg(0)
	if err := f.parse(f.Args()[1:]); err != nil {
		return err
	}
	if *n <= 0 {
		*n = -1
	}
	info, err := localdb.Inspect(ctx, path, localdb.InspectOptions{Conflicts: *n})
	if err != nil {
		return err
	}
	out := deviceOut{Info: info, Position: -1}
	if info.Cursor != "" {
		c, err := server.ParseCursor(info.Cursor)
		if err != nil {
			return fmt.Errorf("%s: cursor: %w", path, err)
		}
		out.Position = c.Version
	}
	if f.json {
		return e.printJSON(out)
	}
	return e.printDevice(out)
}

// printDevice writes what device found as tables.
func (e *env) printDevice(d deviceOut) error {
	push := "none under way"
	if d.PushSession != "" {
		push = fmt.Sprintf("session %s, %d batches acknowledged", d.PushSession, d.PushBatches)
		if d.PushFinal {
			push += ", last batch sent with the commit, answer unknown"
		}
	}
	clock := "-"
	if d.ClockTime != nil {
		clock = stamp(*d.ClockTime) + " (" + e.age(*d.ClockTime) + " ago)"
	}
	rows := [][]string{
		{"file", d.Path},
		{"tenant", orDash(d.Tenant)},
		{"device", d.Device},
		{"registered", yesNo(d.Registered)},
		{"server URL", "not stored in the file (the app configures it)"},
		{"pull position", position(d.Position)},
		{"last clock reading", clock},
		{"pending rows", strconv.FormatInt(d.Pending, 10)},
		{"push", push},
		{"rebuilding", yesNo(d.Rebuilding)},
		{"stashed rows", strconv.FormatInt(d.Stashed, 10)},
		{"unsent increments", strconv.FormatInt(d.Increments, 10)},
		{"open conflicts", strconv.FormatInt(d.OpenConflicts, 10)},
	}
	if err := e.table("FIELD VALUE", rows); err != nil {
		return err
	}
	fmt.Fprintln(e.Stdout)
	rows = make([][]string, len(d.Tables))
	for i, t := range d.Tables {
		rows[i] = []string{t.Name, strconv.FormatInt(t.Rows, 10), strconv.FormatInt(t.Pending, 10), strconv.FormatInt(t.PendingDeletes, 10)}
	}
	if err := e.table("TABLE ROWS PENDING PENDING-DELETES", rows); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "\nconflict log: %d latest entries, newest first\n", len(d.Conflicts))
	if len(d.Conflicts) == 0 {
		return nil
	}
	rows = make([][]string, len(d.Conflicts))
	for i, c := range d.Conflicts {
		rows[i] = []string{strconv.FormatInt(c.ID, 10), c.Table, c.RowID, c.Strategy, c.Winner, c.State, stamp(c.At), orDash(c.Reason)}
	}
	return e.table("ID TABLE ROW STRATEGY WINNER STATE AT REASON", rows)
}
