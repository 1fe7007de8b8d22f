package admin

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tethersync/tether/server/sqlstore"
)

// schemaOut is the JSON of the schema command.
type schemaOut struct {
	Tenant string                 `json:"tenant"`
	Server []sqlstore.ServerTable `json:"server_tables"`
	Device []deviceSchema         `json:"device_schemas"`
}

// deviceSchema is a device schema and how it differs from the server
// database's tables.
type deviceSchema struct {
	sqlstore.SchemaInfo
	Differences []string `json:"differences"`
}

// runSchema shows the server's tables and the tenant's device schemas.
func runSchema(ctx context.Context, e *env, args []string) error {
	f := e.newFlags("schema", true)
	if err := f.parse(args, "db", "tenant"); err != nil {
		return err
	}
	s, err := e.open(ctx, f)
	if err != nil {
		return err
	}
	defer s.Close()
	out := schemaOut{Tenant: f.tenant, Device: []deviceSchema{}}
	if out.Server, err = s.ServerSchema(ctx); err != nil {
		return err
	}
	schemas, err := s.Schemas(ctx, f.tenant)
	if err != nil {
		return err
	}
	for _, si := range schemas {
		out.Device = append(out.Device, deviceSchema{si, differences(si, out.Server)})
	}
	if f.json {
		return e.printJSON(out)
	}
	fmt.Fprintf(e.Stdout, "server database: %d synced tables\n", len(out.Server))
	rows := make([][]string, len(out.Server))
	for i, t := range out.Server {
		rows[i] = []string{t.Name, strings.Join(t.Columns, ",")}
	}
	if err := e.table("TABLE COLUMNS", rows); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "\ntenant %s: %d schemas its devices registered with\n", f.tenant, len(out.Device))
	rows = make([][]string, len(out.Device))
	for i, d := range out.Device {
		tables := "-"
		if d.Schema != nil {
			var ts []string
			for _, t := range d.Schema.Tables {
				ts = append(ts, t.Name+"("+strconv.Itoa(len(t.Columns))+")")
			}
			tables = strings.Join(ts, ",")
		}
		diff := "-"
		if len(d.Differences) > 0 {
			diff = strings.Join(d.Differences, "; ")
		}
		rows[i] = []string{schemaName(d.ID), strconv.Itoa(d.Devices), tables, diff}
	}
	return e.table("SCHEMA DEVICES TABLES DIFFERS-FROM-SERVER", rows)
}

// differences lists how device schema si differs from the server's
// tables: tables and columns the server lacks, columns the device lacks.
func differences(si sqlstore.SchemaInfo, server []sqlstore.ServerTable) []string {
	out := []string{}
	if si.Schema == nil {
		if si.ID != "" {
			out = append(out, "the schema is no longer stored")
		}
		return out
	}
	for _, t := range si.Schema.Tables {
		i := slices.IndexFunc(server, func(st sqlstore.ServerTable) bool { return st.Name == t.Name })
		if i < 0 {
			out = append(out, "table "+t.Name+" is not on the server")
			continue
		}
		var have []string
		for _, c := range t.Columns {
			have = append(have, c.Name)
			if !slices.Contains(server[i].Columns, c.Name) {
				out = append(out, t.Name+"."+c.Name+" is not on the server")
			}
		}
		for _, c := range server[i].Columns {
			if !slices.Contains(have, c) {
				out = append(out, t.Name+" lacks "+c)
			}
		}
	}
	return out
}
