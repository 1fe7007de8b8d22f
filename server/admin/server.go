package admin

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tethersync/tether/server/sqlstore"
)

// devicesOut is the JSON of the devices command.
type devicesOut struct {
	Tenant  string                `json:"tenant"`
	Latest  int64                 `json:"latest"`
	Devices []sqlstore.DeviceInfo `json:"devices"`
}

// runDevices lists a tenant's devices.
func runDevices(ctx context.Context, e *env, args []string) error {
	f := e.newFlags("devices", true)
	var unseen time.Duration
	f.DurationVar(&unseen, "unseen", 0, "list only the devices not seen for at least this long (168h: a week)")
	if err := f.parse(args, "db", "tenant"); err != nil {
		return err
	}
	s, err := e.open(ctx, f)
	if err != nil {
		return err
	}
	defer s.Close()
	latest, err := s.Latest(ctx, f.tenant)
	if err != nil {
		return err
	}
	all, err := s.Devices(ctx, f.tenant)
	if err != nil {
		return err
	}
	out := devicesOut{Tenant: f.tenant, Latest: latest, Devices: []sqlstore.DeviceInfo{}}
	for _, d := range all {
		if unseen == 0 || e.Now().Sub(d.Seen) >= unseen {
			out.Devices = append(out.Devices, d)
		}
	}
	if f.json {
		return e.printJSON(out)
	}
	fmt.Fprintf(e.Stdout, "tenant %s: latest version %d, %d devices", f.tenant, latest, len(out.Devices))
	if unseen > 0 {
		fmt.Fprintf(e.Stdout, " unseen for %v or more (of %d)", unseen, len(all))
	}
	fmt.Fprintln(e.Stdout)
	rows := make([][]string, len(out.Devices))
	for i, d := range out.Devices {
		rows[i] = []string{d.Device, d.User, stamp(d.Seen), e.age(d.Seen), position(d.Position), strconv.FormatInt(d.Lag, 10),
			yesNo(d.Revoked), schemaName(d.Schema), keysText(d.Keys)}
	}
	return e.table("DEVICE USER LAST-SEEN AGO POSITION LAG REVOKED SCHEMA KEYS", rows)
}

// yesNo formats a boolean.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// position formats a pull position: "-" before the first pull.
func position(v int64) string {
	if v < 0 {
		return "-"
	}
	return strconv.FormatInt(v, 10)
}

// schemaName shortens a schema id; "server" for the server's.
func schemaName(id string) string {
	if id == "" {
		return "server"
	}
	return id[:min(len(id), 12)]
}

// keysText joins keys; "-" when they are unknown.
func keysText(keys []string) string {
	if keys == nil {
		return "-"
	}
	if len(keys) == 0 {
		return "(none)"
	}
	return strings.Join(keys, ",")
}

// sessionsOut is the JSON of the sessions command.
type sessionsOut struct {
	Tenant   string                 `json:"tenant"`
	Sessions []sqlstore.SessionInfo `json:"sessions"`
}

// runSessions lists a tenant's open push sessions.
func runSessions(ctx context.Context, e *env, args []string) error {
	f := e.newFlags("sessions", true)
	if err := f.parse(args, "db", "tenant"); err != nil {
		return err
	}
	s, err := e.open(ctx, f)
	if err != nil {
		return err
	}
	defer s.Close()
	ss, err := s.OpenSessions(ctx, f.tenant)
	if err != nil {
		return err
	}
	if ss == nil {
		ss = []sqlstore.SessionInfo{}
	}
	if f.json {
		return e.printJSON(sessionsOut{f.tenant, ss})
	}
	fmt.Fprintf(e.Stdout, "tenant %s: %d open push sessions\n", f.tenant, len(ss))
	if len(ss) == 0 {
		return nil
	}
	rows := make([][]string, len(ss))
	for i, x := range ss {
		rows[i] = []string{x.ID, x.Device, x.User, stamp(x.Opened), stamp(x.Active), e.age(x.Active),
			strconv.FormatInt(x.Batches, 10), strconv.FormatInt(x.Rows, 10), strconv.FormatInt(x.Bytes, 10)}
	}
	return e.table("SESSION DEVICE USER OPENED LAST-ACTIVITY AGO BATCHES ROWS BYTES", rows)
}
