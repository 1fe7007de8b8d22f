package sqlident

import "strings"

// Quote returns s as a double-quoted SQL identifier, with each embedded
// double quote doubled: Quote(`a"b`) is `"a""b"`. The result is safe to
// splice into a statement whatever s holds.
func Quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
