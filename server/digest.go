package server

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/wire"
)

// digest serves the digests of the tenant's live rows, of the tables
// and columns a POST names, or of every table (wire.Digests). Computing a
// table's digest costs one unit of Options.MaxCost per column. When the
// server's expensive work is at MaxCost, a table's digest computed since
// the tenant's version last moved is reused instead of waiting: repeated
// digests cost nothing when work is scarcest, while an idle server
// computes each afresh (so a row changed behind the server's back shows).
func (s *Server) digest(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error) {
	if _, err := s.optionalDevice(ctx, p, r); err != nil { // a revoked device, when it names one
		return nil, err
	}
	var req wire.DigestRequest
	if r.Method == http.MethodPost {
		if err := s.decode(w, r, &req); err != nil {
			return nil, err
		}
		if err := checkDigestColumns(s.store.Schema(), req.Columns); err != nil {
			return nil, err
		}
	}
	version, err := s.store.LatestVersion(ctx, p.Tenant)
	if err != nil {
		return nil, fmt.Errorf("digest: %w", err)
	}
	tables, cost := s.digestTables(p, req.Columns)
	release, ok := s.costs.try(p.Tenant, cost)
	if !ok {
		cost = 0
		for i := range tables {
			if tables[i].td, tables[i].ok = s.digests.get(tables[i].key, version); !tables[i].ok {
				cost += tables[i].cost
			}
		}
		if cost > 0 {
			if release, err = s.costs.acquire(ctx, w, p.Tenant, fmt.Sprintf("a digest of %d columns", cost), cost); err != nil {
				return nil, err
			}
		}
	}
	if release != nil {
		defer release()
	}
	var out wire.Digests
	for _, tb := range tables {
		if !tb.ok {
			if tb.td, err = s.store.Digest(ctx, p, tb.key.table, tb.cols); err != nil {
				return nil, err
			}
			s.digests.put(tb.key, version, tb.td)
		}
		out.Tables = append(out.Tables, tb.td)
	}
	return out, nil
}

// digestTable is a table a digest request asks for.
type digestTable struct {
	key  digestKey
	cols []string // nil for every column
	cost int64
	td   wire.TableDigest // when ok
	ok   bool
}

// digestTables returns the tables of tenant that columns asks for (nil
// for every column of every table), in the schema's order, and their cost.
//
// A scoped table's digest is the principal's own: its key names the
// principal and its claims (which may give it keys).
func (s *Server) digestTables(p Principal, columns map[string][]string) (tables []digestTable, cost int64) {
	for _, t := range s.store.Schema().Tables {
		tb := digestTable{cost: int64(len(t.Columns))}
		if columns != nil {
			if tb.cols = columns[t.Name]; tb.cols == nil {
				continue // not one of the device's tables
			}
			tb.cost = int64(len(tb.cols))
		}
		tb.key = newDigestKey(p.Tenant, t.Name, tb.cols)
		if s.opts.Scopes.Scoped(t.Name) {
			claims, _ := json.Marshal(p.Claims)
			tb.key.viewer = sha256.Sum256(append([]byte(p.User+"\x00"), claims...))
		}
		tables = append(tables, tb)
		cost += tb.cost
	}
	return tables, cost
}

// checkDigestColumns returns an error wrapping wire.ErrBadRequest, naming
// the problem, unless every table of columns is the schema's and its
// columns are the table's, id first, none twice (so at most the table's
// columns, and at least id).
func checkDigestColumns(schema entity.Schema, columns map[string][]string) error {
	for _, name := range slices.Sorted(maps.Keys(columns)) {
		t := schema.Table(name)
		if t == nil {
			return fmt.Errorf("digest: unknown table %q: %w", clip(name), wire.ErrBadRequest)
		}
		cols := columns[name]
		if len(cols) == 0 {
			return fmt.Errorf("digest %s: no columns (want id first, then others of the table): %w", name, wire.ErrBadRequest)
		}
		if cols[0] != "id" {
			return fmt.Errorf("digest %s: first column %q, want id: %w", name, clip(cols[0]), wire.ErrBadRequest)
		}
		seen := make(map[string]bool, len(cols))
		for _, c := range cols {
			if _, ok := t.Column(c); !ok {
				return fmt.Errorf("digest %s: unknown column %q: %w", name, clip(c), wire.ErrBadRequest)
			}
			if seen[c] {
				return fmt.Errorf("digest %s: column %q named twice: %w", name, c, wire.ErrBadRequest)
			}
			seen[c] = true
		}
	}
	return nil
}

// maxDigestCache bounds the table digests the server keeps for reuse.
const maxDigestCache = 4096

// digestKey names a table digest: of a tenant's table, over columns (a
// hash of their list, so that a key is small whatever the table's width).
type digestKey struct {
	tenant, table string
	columns       [sha256.Size]byte
	viewer        [sha256.Size]byte // with scopes, whose rows
}

// newDigestKey returns the key of tenant's digest of table over cols, nil
// meaning every column.
func newDigestKey(tenant, table string, cols []string) digestKey {
	h := sha256.New()
	if cols == nil {
		h.Write([]byte{0}) // every column: no list hashes the same
	}
	for _, c := range cols {
		h.Write([]byte(c))
		h.Write([]byte{1})
	}
	k := digestKey{tenant: tenant, table: table}
	h.Sum(k.columns[:0])
	return k
}

// digestCache keeps table digests with the tenant's version they were
// computed at, at most maxDigestCache of them. It is safe for concurrent
// use.
type digestCache struct {
	mu sync.Mutex
	m  map[digestKey]cachedDigest
}

type cachedDigest struct {
	version int64
	td      wire.TableDigest
}

func newDigestCache() *digestCache {
	return &digestCache{m: map[digestKey]cachedDigest{}}
}

// get returns the digest of k when it was computed at version.
func (c *digestCache) get(k digestKey, version int64) (wire.TableDigest, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || e.version != version {
		return wire.TableDigest{}, false
	}
	return e.td, true
}

// put keeps the digest of k computed at version (or later: the rows are
// read after the version), unless one of a later version is kept. When
// full, it forgets some other digest first.
func (c *digestCache) put(k digestKey, version int64, td wire.TableDigest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok && e.version > version {
		return
	}
	if _, ok := c.m[k]; !ok && len(c.m) >= maxDigestCache {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	c.m[k] = cachedDigest{version: version, td: td}
}
