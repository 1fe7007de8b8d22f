package admin

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/tethersync/tether/server/sqlstore"
)

// keysOut is the JSON of the keys command.
type keysOut struct {
	Tenant string `json:"tenant"`
	User   string `json:"user"`
	sqlstore.UserKeys
}

// runKeys shows the scope keys a user's devices hold.
func runKeys(ctx context.Context, e *env, args []string) error {
	f := e.newFlags("keys", true)
	var user string
	f.StringVar(&user, "user", "", "the user (required)")
	if err := f.parse(args, "db", "tenant", "user"); err != nil {
		return err
	}
	s, err := e.open(ctx, f)
	if err != nil {
		return err
	}
	defer s.Close()
	uk, err := s.UserKeys(ctx, f.tenant, user)
	if err != nil {
		return err
	}
	if len(uk.Devices) == 0 {
		return fmt.Errorf("user %q has no device registered in tenant %q: %w", user, f.tenant, ErrUnknownUser)
	}
	if f.json {
		return e.printJSON(keysOut{f.tenant, user, uk})
	}
	switch {
	case !uk.Scopes:
		fmt.Fprintf(e.Stdout, "tenant %s has no scoped table: the server runs without scopes, and every device of the tenant receives every row\n", f.tenant)
		return nil
	case len(uk.ScopedTables) == 0:
		fmt.Fprintf(e.Stdout, "tenant %s has no scoped table rows: no row of it carries a scope key\n", f.tenant)
	default:
		fmt.Fprintf(e.Stdout, "tenant %s, user %s: scoped tables %s (the rows of every other table go to every device)\n",
			f.tenant, user, strings.Join(uk.ScopedTables, ", "))
	}
	rows := make([][]string, len(uk.Devices))
	for i, d := range uk.Devices {
		keys := keysText(d.Keys)
		if !d.Known {
			keys = "unknown (not pulled under scopes yet)"
		}
		rows[i] = []string{d.Device, keys}
	}
	if err := e.table("DEVICE KEYS", rows); err != nil {
		return err
	}
	fmt.Fprintln(e.Stdout)
	rows = nil
	for _, t := range uk.Tables {
		for _, c := range uk.Counts {
			if c.Table == t.Table {
				rows = append(rows, []string{c.Table, c.Key, strconv.FormatInt(c.Rows, 10)})
			}
		}
		rows = append(rows, []string{t.Table, "(any of them)", strconv.FormatInt(t.Rows, 10)})
	}
	return e.table("TABLE KEY ROWS", rows)
}
