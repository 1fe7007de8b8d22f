package coordinator

import (
	"context"
	"fmt"

	"github.com/tethersync/tether/wire"
)

// TableCheck compares one table of the device with the server.
type TableCheck struct {
	Table      string
	DeviceRows int // live rows on the device, unpushed ones included
	ServerRows int // live rows of the tenant on the server
	Pending    int // device rows waiting to be pushed
	Match      bool
}

// VerifyReport is the answer of Verify.
type VerifyReport struct {
	Tables []TableCheck
}

// Differs returns the names of the tables whose contents differ.
func (r VerifyReport) Differs() []string {
	var out []string
	for _, t := range r.Tables {
		if !t.Match {
			out = append(out, t.Table)
		}
	}
	return out
}

// Verify compares a SHA-256 digest of every table's rows on the device with
// the server's, and reports which tables differ: a diagnostic a field
// technician can run. Sync first: rows not yet pushed (see Pending) or not
// yet pulled make a table differ. Verify moves no rows.
func (c *Coordinator) Verify(ctx context.Context) (VerifyReport, error) {
	// Compared: the columns this device has, which a server with a newer
	// schema has too.
	columns := map[string][]string{}
	for _, t := range c.store.Registry().Schema().Tables {
		for _, col := range t.Columns {
			columns[t.Name] = append(columns[t.Name], col.Name)
		}
	}
	srv, err := c.api.Digests(ctx, columns)
	if err != nil {
		return VerifyReport{}, fmt.Errorf("verify: %w", err)
	}
	byName := map[string]wire.TableDigest{}
	for _, t := range srv.Tables {
		byName[t.Table] = t
	}
	var rep VerifyReport
	for _, e := range c.store.Registry().Entities() {
		local, pending, err := c.store.Digest(ctx, e.Table.Name)
		if err != nil {
			return VerifyReport{}, fmt.Errorf("verify: %w", err)
		}
		remote, ok := byName[e.Table.Name]
		rep.Tables = append(rep.Tables, TableCheck{Table: e.Table.Name, DeviceRows: local.Rows, ServerRows: remote.Rows,
			Pending: pending, Match: ok && remote.SHA256 == local.SHA256})
	}
	return rep, nil
}
