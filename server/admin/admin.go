package admin

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tethersync/tether/server/sqlstore"
)

// Sentinel errors.
var (
	// ErrUnknownUser is returned by the keys command for a user without a
	// device in the tenant.
	ErrUnknownUser = errors.New("unknown user")
	// ErrNotServer is returned for a -db that is not a tether server
	// database.
	ErrNotServer = errors.New("not a tether server database")
	// ErrUsage is wrapped by the errors of a bad command line: an unknown
	// command, a missing or malformed flag.
	ErrUsage = errors.New("see -help")
)

// Options configure Run. The zero value works.
type Options struct {
	// Name is the command's name in usage texts; default "tether-admin".
	Name string
	// Open opens the server database that -db names, for the server
	// commands; default [OpenStore]. An app that embeds the server may
	// return its own store.
	Open func(ctx context.Context, db string) (*sqlstore.Store, error)
	// Stdout receives the output, Stderr the usage texts; default
	// os.Stdout and os.Stderr.
	Stdout, Stderr io.Writer
	// Now is the clock of the ages shown; default time.Now.
	Now func() time.Time
}

// command is a subcommand: its name, its arguments and what it does.
type command struct{ name, args, summary string }

// commands are the subcommands, in the order usage lists them.
var commands = []command{
	{"devices", "-db URL -tenant T [-unseen D]", "list a tenant's devices: user, last seen, pull position and lag in versions"},
	{"sessions", "-db URL -tenant T", "list a tenant's open push sessions and what they staged"},
	{"schema", "-db URL -tenant T", "show the app schemas the tenant's devices registered with, and the server's tables"},
	{"keys", "-db URL -tenant T -user U", "show the scope keys a user's devices hold and the rows each key brings"},
	{"revoke", "-db URL -tenant T -device D", "revoke a device (a lost one): its requests are refused until it is reinstated"},
	{"reinstate", "-db URL -tenant T -device D", "reinstate a revoked device: it syncs again"},
	{"device", "FILE [-conflicts N]", "inspect a device database file, offline"},
}

// runs are the commands' functions, by name.
var runs = map[string]func(ctx context.Context, e *env, args []string) error{
	"devices": runDevices, "sessions": runSessions, "schema": runSchema, "keys": runKeys, "device": runDevice,
	"revoke": runRevoke, "reinstate": runReinstate,
}

// env is what a command runs with.
type env struct {
	Options
}

// Run runs the command that args name (without the program's name:
// os.Args[1:]), writing its output to opts.Stdout. It returns flag.ErrHelp
// after -help, an error wrapping ErrUsage for a bad command line, and the
// command's error otherwise.
func Run(ctx context.Context, args []string, opts Options) error {
	e := &env{opts}
	if e.Name == "" {
		e.Name = "tether-admin"
	}
	if e.Open == nil {
		e.Open = OpenStore
	}
	if e.Stdout == nil {
		e.Stdout = os.Stdout
	}
	if e.Stderr == nil {
		e.Stderr = os.Stderr
	}
	if e.Now == nil {
		e.Now = time.Now
	}
	if len(args) == 0 {
		e.usage()
		return fmt.Errorf("no command given: %w", ErrUsage)
	}
	switch args[0] {
	case "help", "-help", "--help", "-h":
		e.usage()
		return flag.ErrHelp
	}
	run := runs[args[0]]
	if run == nil {
		e.usage()
		return fmt.Errorf("unknown command %q: %w", args[0], ErrUsage)
	}
	return run(ctx, e, args[1:])
}

// usage lists the commands on Stderr.
func (e *env) usage() {
	fmt.Fprintf(e.Stderr, "usage: %s COMMAND [flags]\n\ncommands:\n", e.Name)
	tw := tabwriter.NewWriter(e.Stderr, 0, 0, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s %s\t%s\n", c.name, c.args, c.summary)
	}
	tw.Flush()
	fmt.Fprintf(e.Stderr, "\n%s COMMAND -help describes a command's flags.\n", e.Name)
}

// flags is the flag set of a command, with the flags most share.
type flags struct {
	*flag.FlagSet
	db, tenant string
	json       bool
}

// newFlags returns the flag set of command c; server adds -db and
// -tenant.
func (e *env) newFlags(c string, server bool) *flags {
	i := slices.IndexFunc(commands, func(x command) bool { return x.name == c })
	f := &flags{FlagSet: flag.NewFlagSet(c, flag.ContinueOnError)}
	f.SetOutput(e.Stderr)
	f.Usage = func() {
		fmt.Fprintf(e.Stderr, "usage: %s %s %s\n\n%s.\n\nflags:\n", e.Name, c, commands[i].args, commands[i].summary)
		f.PrintDefaults()
	}
	if server {
		f.StringVar(&f.db, "db", "", "the server database, as tether-server's -db: a SQLite path, a postgres:// or a mysql:// URL (required)")
		f.StringVar(&f.tenant, "tenant", "", "the tenant (required)")
	}
	f.BoolVar(&f.json, "json", false, "print JSON instead of tables")
	return f
}

// parse parses args, and checks that the flags named in required are set
// and that no argument is left.
func (f *flags) parse(args []string, required ...string) error {
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%s: %v: %w", f.Name(), err, ErrUsage)
	}
	if f.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q: %w", f.Name(), f.Arg(0), ErrUsage)
	}
	for _, name := range required {
		if f.Lookup(name).Value.String() == "" {
			return fmt.Errorf("%s: -%s is required: %w", f.Name(), name, ErrUsage)
		}
	}
	return nil
}

// open opens the store -db names.
func (e *env) open(ctx context.Context, f *flags) (*sqlstore.Store, error) {
	s, err := e.Open(ctx, f.db)
	if err != nil {
		return nil, fmt.Errorf("-db: %w", err)
	}
	return s, nil
}

// printJSON writes v as indented JSON.
func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes a header line and rows, aligned.
func (e *env) table(header string, rows [][]string) error {
	tw := tabwriter.NewWriter(e.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ReplaceAll(header, " ", "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// stamp formats a server time for a table.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }

// age formats how long ago t was, coarsely: "12s", "5m", "3h20m", "9d".
func (e *env) age(t time.Time) string {
	d := e.Now().Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// orDash returns s, or "-" for "".
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
