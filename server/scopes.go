package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/wire"
)

// ErrForbidden is the error an Authorizer wraps to refuse a write: the
// row is not applied, and its device is told (a conflict of strategy
// wire.StrategyForbidden, with the error's text as the reason).
var ErrForbidden = wire.ErrForbidden

// Limits of scopes.
const (
	// MaxPrincipalKeys is the most keys one principal may hold: a pull
	// of a principal holding more is refused (403), naming the count.
	MaxPrincipalKeys = 1000
	// MaxKeyLength is the longest key, in bytes: a row whose key is
	// longer is refused at commit, naming it.
	MaxKeyLength = 200
)

// Scopes decides which rows each device holds, and which rows its
// principal may write (see Options.Scopes). A row carries keys, computed
// from its values by its table's RowKeys; a principal holds keys,
// computed by Principal; a device receives a row when the two share one.
// A table not in Tables is seen, and written, by every device of the
// tenant.
type Scopes struct {
	// Tables gives each scoped table the keys its rows carry.
	Tables map[string]RowKeys
	// Principal gives the keys a principal holds, read in the same
	// transaction as the rows it pulls or writes.
	Principal KeySources
	// Version names the rules: the store computes every row's keys again
	// (and every device rebuilds from a snapshot) when the rules change,
	// which it sees but for the logic of a KeyFunc: change Version with it.
	Version string
}

// Fingerprint identifies the rules: the tables and how their rows get
// keys, the principal's key sources, and Version (a KeyFunc's logic is
// not seen). It is for Store implementations.
func (s *Scopes) Fingerprint() string {
	var b strings.Builder
	fmt.Fprintf(&b, "v=%q;", s.Version)
	for _, name := range slices.Sorted(maps.Keys(s.Tables)) {
		rk := s.Tables[name]
		fmt.Fprintf(&b, "t=%q,%q,%q,%q,%v;", name, rk.prefix, rk.column, rk.parent, rk.fn != nil)
	}
	for _, src := range s.Principal {
		fmt.Fprintf(&b, "p=%q,%v,%q,%q,%q,%q;", src.prefix, src.user, src.claim, src.table, src.userCol, src.keyCol)
	}
	return KeySetID([]string{b.String()})
}

// Scoped reports whether table is scoped.
func (s *Scopes) Scoped(table string) bool {
	if s == nil {
		return false
	}
	_, ok := s.Tables[table]
	return ok
}

// RowKeys is how the rows of a scoped table get their keys: KeyColumn,
// KeyParent or KeyFunc.
type RowKeys struct {
	prefix, column string // KeyColumn
	parent         string // KeyParent: the reference column
	fn             func(values map[string]any) []string
}

// KeyColumn gives each row one key: prefix followed by the value of
// column (none while the column is NULL). An integer value is written in
// decimal, text as it is.
func KeyColumn(prefix, column string) RowKeys {
	return RowKeys{prefix: prefix, column: column}
}

// KeyParent gives each row the keys of the row its reference column (a
// column tagged ref=) names: a task is seen by whoever sees its project.
// The parent table must be scoped too; a row whose column is NULL, or
// names no row, has no key.
func KeyParent(column string) RowKeys {
	return RowKeys{parent: column}
}

// KeyFunc gives each row the keys fn returns for its values (column
// name to value, id included, as a device pushes them: strings, int64,
// float64, bool, []byte, time.Time; nil for NULL). fn must be
// deterministic and quick: it runs for every written row of its table.
func KeyFunc(fn func(values map[string]any) []string) RowKeys {
	return RowKeys{fn: fn}
}

// Parent returns the reference column of a KeyParent rule.
func (k RowKeys) Parent() (column string, ok bool) {
	return k.parent, k.parent != ""
}

// Keys returns the keys of a row of a KeyColumn or KeyFunc rule, from its
// values (id included), sorted and without duplicates. It is for Store
// implementations.
func (k RowKeys) Keys(values map[string]any) []string {
	var keys []string
	switch {
	case k.fn != nil:
		keys = slices.Clone(k.fn(values))
	case k.column != "":
		if s, ok := keyValue(values[k.column]); ok {
			keys = []string{k.prefix + s}
		}
	}
	return SortKeys(keys)
}

// keyValue writes a column value as a key's suffix.
func keyValue(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", false
	case string:
		return x, true
	case int64:
		return strconv.FormatInt(x, 10), true
	case int:
		return strconv.Itoa(x), true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), true
	case []byte:
		return string(x), true
	case time.Time:
		return entity.FormatTime(x), true
	}
	return fmt.Sprint(v), true
}

// KeySetID identifies a set of keys (sorted, without duplicates, as
// SortKeys leaves them): 16 hex digits of the SHA-256 of its keys.
func KeySetID(keys []string) string {
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// SortKeys sorts keys and drops duplicates and empty keys, in place.
func SortKeys(keys []string) []string {
	keys = slices.DeleteFunc(keys, func(k string) bool { return k == "" })
	slices.Sort(keys)
	return slices.Compact(keys)
}

// KeySource is one source of the keys a principal holds: UserKey,
// TableKeys or ClaimKeys.
type KeySource struct {
	prefix  string
	user    bool   // UserKey
	claim   string // ClaimKeys
	table   string // TableKeys
	userCol string
	keyCol  string
}

// KeySources are the sources of a principal's keys (PrincipalKeys).
type KeySources []KeySource

// PrincipalKeys combines sources: a principal holds the keys of each.
func PrincipalKeys(sources ...KeySource) KeySources {
	return KeySources(sources)
}

// UserKey gives a principal the key prefix + its user (Principal.User).
func UserKey(prefix string) KeySource {
	return KeySource{prefix: prefix, user: true}
}

// TableKeys gives a principal one key per live row of table whose
// userColumn is its user: prefix + the row's keyColumn. The rows are read
// in the transaction of the pull or commit, so a membership row written
// by a back office (Server.Write) or a device takes effect at the next
// pull of every device of that user.
func TableKeys(table, userColumn, prefix, keyColumn string) KeySource {
	return KeySource{prefix: prefix, table: table, userCol: userColumn, keyCol: keyColumn}
}

// ClaimKeys gives a principal a key per value of a claim of its token
// (Principal.Claims): prefix + the value, for a string or a number, or
// for each string or number of a list. Such keys change only when the
// token does.
func ClaimKeys(claim, prefix string) KeySource {
	return KeySource{prefix: prefix, claim: claim}
}

// Table returns the table, the user column and the key column of a
// TableKeys source.
func (s KeySource) Table() (table, userColumn, keyColumn string, ok bool) {
	return s.table, s.userCol, s.keyCol, s.table != ""
}

// Keys returns the keys principal p holds, sorted and without
// duplicates. lookup reads the values of a TableKeys source's key column
// in the live rows of its table whose user column is p.User (in the
// store's transaction). More than MaxPrincipalKeys keys is an error
// wrapping wire.ErrForbidden. It is for Store implementations.
func (ks KeySources) Keys(p Principal, lookup func(table, userColumn, keyColumn string) ([]any, error)) ([]string, error) {
	var keys []string
	for _, s := range ks {
		switch {
		case s.user:
			keys = append(keys, s.prefix+p.User)
		case s.claim != "":
			v := p.Claims[s.claim]
			vals, ok := v.([]any)
			if !ok {
				vals = []any{v}
			}
			for _, v := range vals {
				switch v.(type) {
				case string, float64, int64, int, bool:
					if k, ok := keyValue(v); ok {
						keys = append(keys, s.prefix+k)
					}
				}
			}
		case s.table != "":
			vals, err := lookup(s.table, s.userCol, s.keyCol)
			if err != nil {
				return nil, fmt.Errorf("keys of %s: %w", s.table, err)
			}
			for _, v := range vals {
				if k, ok := keyValue(v); ok {
					keys = append(keys, s.prefix+k)
				}
			}
		}
	}
	keys = SortKeys(keys)
	if len(keys) > MaxPrincipalKeys {
		return nil, fmt.Errorf("user %s holds %d scope keys, more than %d: %w", clip(p.User), len(keys), MaxPrincipalKeys, wire.ErrForbidden)
	}
	return keys, nil
}

// Authorizer decides, after the scope check, whether principal p may
// write a row of table: old is the server's row before the write (nil for
// a new row), new the row as it would be after it (Deleted for a
// delete). It returns nil to allow the write, or an error wrapping
// ErrForbidden whose text says why, to refuse it. Any other error fails
// the commit. It runs inside the commit's transaction: it must be quick,
// and must not write to the store.
type Authorizer func(ctx context.Context, p Principal, table string, old, new *wire.Row) error

// trustedKey marks a context whose writes skip the scope and Authorize
// checks (Server.Write).
type trustedKey struct{}

// Trusted returns a context under which a store commits writes without
// the scope and Authorize checks: Server.Write's. It is for Store
// implementations and their tests.
func Trusted(ctx context.Context) context.Context {
	return context.WithValue(ctx, trustedKey{}, true)
}

// IsTrusted reports whether ctx was made by Trusted.
func IsTrusted(ctx context.Context) bool {
	v, _ := ctx.Value(trustedKey{}).(bool)
	return v
}

// check checks the scopes against the store's schema: every table and
// column they name exists, a KeyParent column is a reference to a scoped
// table, and no device could hold a row whose referenced row it may not
// see (its foreign key would break).
func (s *Scopes) check(schema entity.Schema) error {
	if s == nil {
		return nil
	}
	if len(s.Tables) > 0 && len(s.Principal) == 0 {
		return errors.New("scopes: no Principal keys: no device would see a scoped table")
	}
	for _, name := range slices.Sorted(maps.Keys(s.Tables)) {
		rk := s.Tables[name]
		t := schema.Table(name)
		if t == nil {
			return fmt.Errorf("scopes: table %q is not in the schema", name)
		}
		switch {
		case rk.parent != "":
			c, ok := t.Column(rk.parent)
			if !ok || c.Ref == "" {
				return fmt.Errorf("scopes: %s: KeyParent(%q) needs a reference column (tagged ref=)", name, rk.parent)
			}
			if !s.Scoped(c.Ref) {
				return fmt.Errorf("scopes: %s: KeyParent(%q) takes the keys of %s, which is not scoped", name, rk.parent, c.Ref)
			}
		case rk.column != "":
			if _, ok := t.Column(rk.column); !ok {
				return fmt.Errorf("scopes: %s: KeyColumn(%q, %q): no such column", name, rk.prefix, rk.column)
			}
		case rk.fn == nil:
			return fmt.Errorf("scopes: %s: no rule (use KeyColumn, KeyParent or KeyFunc)", name)
		}
	}
	// A child must be seen wherever it is: it takes its scoped parent's
	// keys, or its foreign key breaks on a device that holds it and not
	// the parent.
	for _, t := range schema.Tables {
		for _, c := range t.Columns {
			if c.Ref == "" || !s.Scoped(c.Ref) {
				continue
			}
			if rk, ok := s.Tables[t.Name]; !ok || rk.parent != c.Name {
				return fmt.Errorf("scopes: %s.%s references %s, which is scoped, and %s does not take its keys: a device could hold a %s row without the %s row it references; give %s server.KeyParent(%q)",
					t.Name, c.Name, c.Ref, t.Name, t.Name, c.Ref, t.Name, c.Name)
			}
		}
	}
	// A cascade deletes rows its member did not write: a scoped row
	// may go only with a row whose keys it has (KeyParent), or a member
	// could delete the rows of others' scopes by deleting their parent.
	for _, t := range schema.Tables {
		rk, scoped := s.Tables[t.Name]
		for _, c := range t.Columns {
			if scoped && c.Ref != "" && c.OnDelete == entity.Cascade && rk.parent != c.Name {
				return fmt.Errorf("scopes: %s.%s deletes with %s (cascade), and %s does not take its keys: a member deleting a %s row would delete %s rows it may not see; use the restore policy, or give %s server.KeyParent(%q)",
					t.Name, c.Name, c.Ref, t.Name, c.Ref, t.Name, t.Name, c.Name)
			}
		}
	}
	for _, src := range s.Principal {
		if src.table == "" {
			continue
		}
		t := schema.Table(src.table)
		if t == nil {
			return fmt.Errorf("scopes: TableKeys: table %q is not in the schema", src.table)
		}
		for _, col := range []string{src.userCol, src.keyCol} {
			if _, ok := t.Column(col); !ok {
				return fmt.Errorf("scopes: TableKeys(%q): no column %q", src.table, col)
			}
		}
	}
	return nil
}
