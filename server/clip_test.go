package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestClip(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"short", "short"},
		{strings.Repeat("x", clipBytes), strings.Repeat("x", clipBytes)},
		{strings.Repeat("x", clipBytes+1), strings.Repeat("x", clipBytes) + "… (101 bytes)"},
		// A cut never splits a character: "é" is 2 bytes.
		{strings.Repeat("x", clipBytes-1) + "éé", strings.Repeat("x", clipBytes-1) + "… (103 bytes)"},
	} {
		if got := clip(tc.in); got != tc.want {
			t.Errorf("clip(%.20q… %d bytes)=%q, want %q", tc.in, len(tc.in), got, tc.want)
		}
	}
}

// FuzzSkim checks that what skim accepts is one valid JSON value within
// its bounds, and that it never panics.
func FuzzSkim(f *testing.F) {
	for _, s := range []string{`{}`, `{"session":"s1"}`, `{"settle":{"seq":1,"digest":"ab"}}`, `[0,0,0]`, `{"a":[[[[[[[[1]]]]]]]]}`, `"\ud83d\ude00"`, `nul`} {
		f.Add([]byte(s))
	}
	lim := bodyLimit{maxBytes: 1 << 10, maxElems: 4, maxStr: 16}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := &jsonReader{r: bufio.NewReader(bytes.NewReader(data))}
		err := d.skim(0, lim)
		if err == nil {
			err = d.end()
		}
		if err == nil && !json.Valid(data) {
			t.Errorf("skim accepted %q, which is not JSON", data)
		}
	})
}
