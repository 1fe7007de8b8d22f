package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// decide resolves one conflict between the server's row cur and the pushed
// row, for a store's commit: colvers is the server row's column versions
// (a JSON object, or ""), version the commit's, device and user who pushed.
// It returns the conflict to report and, for a merge, the row to apply
// instead of the pushed one, validated against t.
func decide(ctx context.Context, resolve server.Resolver, t *entity.Table, cur, pushed wire.Row, colvers string, version int64, device, user string) (wire.Conflict, *wire.Row, error) {
	cols := map[string]int64{}
	if colvers != "" {
		if err := json.Unmarshal([]byte(colvers), &cols); err != nil {
			return wire.Conflict{}, nil, fmt.Errorf("column versions of %s %q: %w", t.Name, pushed.ID, err)
		}
	}
	res, strategy, err := resolve(ctx, server.Conflict{Table: t.Name, ID: pushed.ID, Base: pushed.Base, Server: cur, Pushed: pushed, ServerColumns: cols})
	if err != nil {
		return wire.Conflict{}, nil, err
	}
	cf := wire.Conflict{Table: t.Name, ID: pushed.ID, Strategy: string(strategy), Winner: res.Winner, PushedHLC: pushed.HLC}
	if res.Winner == wire.WinnerServer {
		cf.Row = cur
		return cf, nil, nil
	}
	lost := cur
	cf.Lost = &lost
	row := pushed
	var merged *wire.Row
	if res.Winner == wire.WinnerMerged {
		row = wire.Row{Table: t.Name, ID: pushed.ID, Deleted: res.Deleted, HLC: max(cur.HLC, pushed.HLC), Values: map[string]any{}}
		for _, col := range t.Columns[1:] {
			v, ok := res.Values[col.Name]
			if !ok {
				return wire.Conflict{}, nil, fmt.Errorf("resolve %s %q: the merged row lacks column %s", t.Name, pushed.ID, col.Name)
			}
			canon, err := col.Kind.FromDB(v)
			if err != nil {
				return wire.Conflict{}, nil, fmt.Errorf("resolve %s %q: merged column %s: %w", t.Name, pushed.ID, col.Name, err)
			}
			row.Values[col.Name] = canon
			if !reflect.DeepEqual(canon, cur.Values[col.Name]) {
				row.Changed = append(row.Changed, col.Name) // what the merge changes on the server
			}
		}
		if row.Changed == nil {
			row.Changed = []string{}
		}
		merged = &row
	}
	cf.Row = row
	cf.Row.Version, cf.Row.Device, cf.Row.ModifiedBy = version, device, user
	return cf, merged, nil
}
