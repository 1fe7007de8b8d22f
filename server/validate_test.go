package server

import (
	"regexp"
	"strings"
	"testing"
)

// validStamp accepts exactly what the clock stamp's grammar does.
func TestValidStamp(t *testing.T) {
	grammar := regexp.MustCompile(`^[0-9]{13}\.[0-9]{6}\.[A-Za-z0-9-]{1,64}$`)
	dev := strings.Repeat("d", 64)
	for _, s := range []string{
		"1700000000000.000001.d1", "1700000000000.000001.0190a3b4-0000-7000-8000-000000000001",
		"1700000000000.000001." + dev, "1700000000000.000001." + dev + "e", "1700000000000.000001.",
		"170000000000.000001.d1", "17000000000000.000001.d1", "1700000000000.00001.d1", "1700000000000.0000011.d1",
		"1700000000000-000001.d1", "1700000000000.000001-d1", "1700000000000.000001.d_1", "1700000000000.000001.d 1",
		"170000000000a.000001.d1", "1700000000000.00000a.d1", "1700000000000.000001.dé", "", ".", "1700000000000.000001.d1\n",
		"9999999999999.999999.Z", "0000000000000.000000.-",
	} {
		if got, want := validStamp(s), grammar.MatchString(s); got != want {
			t.Errorf("validStamp(%q)=%v, want %v", s, got, want)
		}
	}
}
