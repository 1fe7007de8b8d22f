package server

import (
	"fmt"
	"unicode/utf8"
)

// An error answer quotes what the request said wrong, but never much of
// it: a 31 MB value quoted back whole turns a 31 KB gzip request into a
// 31 MB answer.
const (
	// clipBytes is how much of a quoted value clip keeps.
	clipBytes = 100
	// maxMessageBytes is the longest message of a 4xx answer (fail).
	maxMessageBytes = 300
)

// clip returns s, or when it is longer than clipBytes its first bytes
// (whole UTF-8 characters) followed by "… (N bytes)": for quoting request
// content (ids, names, values, header values) in an error.
func clip(s string) string {
	return clipTo(s, clipBytes)
}

// clipTo is clip with a bound of n bytes.
func clipTo(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return fmt.Sprintf("%s… (%d bytes)", s[:i], len(s))
}
