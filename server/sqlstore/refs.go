package sqlstore

import (
	"context"
	"fmt"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/wire"
)

// ref is one reference column: child.col holds ids of parent.
type ref struct {
	child, parent *Table
	col           string // quoted
	name          string
	cascade       bool
}

// refs lists the schema's references, children in priority order.
func refs(tables []*Table, byName map[string]*Table) []ref {
	var out []ref
	for _, t := range tables {
		for i, c := range t.schema.Columns {
			if c.Ref == "" || byName[c.Ref] == nil {
				continue
			}
			out = append(out, ref{child: t, parent: byName[c.Ref], col: t.cols[i], name: c.Name, cascade: c.OnDelete == entity.Cascade})
		}
	}
	return out
}

// rowKey names a row of a table.
type rowKey struct{ table, id string }

// references keeps the commit from leaving a live row that references a
// deleted one, on the rows this commit wrote and the rows they reference
// or are referenced by (G12). By each reference's policy, a deleted row a
// live one references comes back (restore), or the referencing rows are
// deleted with it (cascade); a row that had to come back is not deleted
// again by a cascade in the same commit, and a row deleted because what it
// references does not exist (nor can come back) is never brought back, so
// the rules settle. Rows of the pushed session
// that a rule changed are reported in c as conflicts of strategy
// wire.StrategyReference; other rows carry in "_notify" the device whose action
// was undone, and in "_reason" why, until they are written again.
//
// Each rule, in each round, rewrites the rows it found with a few
// statements per refChunk rows (see rewriter), so a commit costs time
// linear in the rows the rules rewrite.
func (a *applier) references(ctx context.Context, c *wire.Commit) error {
	rs := a.s.refs
	if len(rs) == 0 {
		return nil
	}
	own, err := a.ownRows(ctx, c.Version)
	if err != nil {
		return err
	}
	w := &rewriter{a: a, version: c.Version, own: own, reported: map[rowKey]report{}, touched: map[*Table]map[string]bool{}}
	a.touched = w.touched
	kept := map[rowKey]bool{}   // restored in this commit: not deleted again by a cascade
	doomed := map[rowKey]bool{} // deleted for referencing what does not exist: never brought back
	for round := 0; round < 2*len(a.s.tables)+2; round++ {
		changed := false
		for _, r := range rs {
			// A live row written by this commit that references a deleted
			// one, and a row deleted by this commit that live rows
			// reference.
			pairs, err := a.pairs(ctx, r, c.Version)
			if err != nil {
				return err
			}
			gone, back := newRewrites(r.child), newRewrites(r.parent)
			for _, p := range pairs {
				child, parent := rowKey{r.child.schema.Name, p.child}, rowKey{r.parent.schema.Name, p.parent}
				switch {
				case p.missing:
					// Nothing to bring back (never pushed, or its tombstone
					// purged): the row goes, and its device is told.
					doomed[child] = true
					w.add(gone, p.child, fmt.Sprintf("deleted: it references %s %q (%s), which does not exist", r.parent.schema.Name, p.parent, r.name))
				case doomed[parent]:
					// Its parent cannot come back (it references what does
					// not exist): the row goes with it, whatever the
					// policy, so that the rules settle.
					doomed[child] = true
					w.add(gone, p.child, fmt.Sprintf("deleted: it references %s %q (%s), which references a row that does not exist", r.parent.schema.Name, p.parent, r.name))
				case r.cascade && !kept[child]:
					w.add(gone, p.child, fmt.Sprintf("deleted with %s %q, which it references (%s) and which was deleted", r.parent.schema.Name, p.parent, r.name))
				default:
					w.add(back, p.parent, fmt.Sprintf("brought back: %s %q references it (%s)", r.child.schema.Name, p.child, r.name))
					kept[parent] = true
				}
				changed = true
			}
			// A row is either a live child or a deleted parent in pairs:
			// the two sets are apart, and their order does not matter.
			if err := w.apply(ctx, gone, true); err != nil {
				return err
			}
			if err := w.apply(ctx, back, false); err != nil {
				return err
			}
		}
		if !changed {
			if err := w.audit(ctx); err != nil {
				return err
			}
			return w.report(ctx, c)
		}
	}
	return fmt.Errorf("references did not settle after %d rounds", 2*len(a.s.tables)+2)
}

// pair is a live child and the deleted (or missing) parent it references.
type pair struct {
	child, parent string
	missing       bool // no parent row at all
}

// pairs returns the live rows of r.child that reference deleted or missing
// rows of r.parent, where either was written by the commit at version: the
// children written at version (found by the changes index), then the
// parents deleted at version (their children found by the reference
// column's index).
func (a *applier) pairs(ctx context.Context, r ref, version int64) ([]pair, error) {
	var out []pair
	for _, q := range []string{
		fmt.Sprintf(`SELECT c."id", c.%s, p."id" IS NULL FROM %s AS c LEFT JOIN %s AS p ON p."_tenant" = c."_tenant" AND p."id" = c.%s
			WHERE c."_tenant" = ? AND c."_version" = ? AND NOT c."_deleted" AND c.%s IS NOT NULL AND (p."id" IS NULL OR p."_deleted")
			ORDER BY c."id"`, r.col, r.child.Name, r.parent.Name, r.col, r.col),
		fmt.Sprintf(`SELECT c."id", p."id", false FROM %s AS p JOIN %s AS c ON c."_tenant" = p."_tenant" AND c.%s = p."id"
			WHERE p."_tenant" = ? AND p."_version" = ? AND p."_deleted" AND NOT c."_deleted" ORDER BY c."id"`, r.parent.Name, r.child.Name, r.col),
	} {
		rows, err := a.tx.QueryContext(ctx, a.s.q(q), a.p.Tenant, version)
		if err != nil {
			return nil, fmt.Errorf("check references %s.%s: %w", r.child.schema.Name, r.name, err)
		}
		for rows.Next() {
			var p pair
			var missing any
			if err := rows.Scan(&p.child, &p.parent, &missing); err != nil {
				rows.Close()
				return nil, err
			}
			m, _ := entity.KindBool.FromDB(missing)
			p.missing, _ = m.(bool)
			out = append(out, p)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ownRows returns the rows the pushed session wrote: those of the commit's
// audit entries so far.
func (a *applier) ownRows(ctx context.Context, version int64) (map[rowKey]bool, error) {
	rows, err := a.tx.QueryContext(ctx, a.s.q(`SELECT tbl, id FROM _tether_audit WHERE tenant = ? AND version = ?`), a.p.Tenant, version)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	own := map[rowKey]bool{}
	for rows.Next() {
		var k rowKey
		if err := rows.Scan(&k.table, &k.id); err != nil {
			return nil, err
		}
		own[k] = true
	}
	return own, rows.Err()
}
