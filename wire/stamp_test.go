package wire

import (
	"regexp"
	"strings"
	"testing"
)

// ValidStamp accepts exactly what the clock stamp's grammar does.
func TestValidStamp(t *testing.T) {
	grammar := regexp.MustCompile(`^[0-9]{13}\.[0-9]{6}\.[A-Za-z0-9-]{1,64}$`)
	dev := strings.Repeat("d", 64)
	for _, s := range []string{
		"1700000000000.000001.d1", "1700000000000.000001.0190a3b4-0000-7000-8000-000000000001",
		"1700000000000.000001." + dev, "1700000000000.000001." + dev + "e", "1700000000000.000001.",
		"170000000000.000001.d1", "17000000000000.000001.d1", "1700000000000.00001.d1", "1700000000000.0000011.d1",
		"1700000000000-000001.d1", "1700000000000.000001-d1", "1700000000000.000001.d_1", "1700000000000.000001.d 1",
		"170000000000a.000001.d1", "1700000000000.00000a.d1", "1700000000000.000001.dé", "", ".", "1700000000000.000001.d1\n",
		"9999999999999.999999.Z", "0000000000000.000000.-", "+700000000000.000001.d1", "1700000000000.+00001.d1",
	} {
		if got, want := ValidStamp(s), grammar.MatchString(s); got != want {
			t.Errorf("ValidStamp(%q)=%v, want %v", s, got, want)
		}
	}
}

func TestParseStamp(t *testing.T) {
	for _, tc := range []struct {
		ms, counter int64
		device      string
	}{
		{0, 0, "d"},
		{1700000000000, 1, "0190a3b4-0000-7000-8000-000000000001"},
		{9999999999999, MaxStampCounter, strings.Repeat("Z", MaxStampDevice)},
	} {
		s := FormatStamp(tc.ms, tc.counter, tc.device)
		ms, counter, device, err := ParseStamp(s)
		if err != nil || ms != tc.ms || counter != tc.counter || device != tc.device {
			t.Errorf("ParseStamp(%q)=%d, %d, %q, %v; want %d, %d, %q", s, ms, counter, device, err, tc.ms, tc.counter, tc.device)
		}
	}
	for _, s := range []string{"", "10000000000000.000000.d", "1700000000000.000001.d_1"} {
		if _, _, _, err := ParseStamp(s); err == nil {
			t.Errorf("ParseStamp(%q) succeeded, want an error", s)
		}
	}
}

func BenchmarkValidStamp(b *testing.B) {
	s := "1700000000000.000001.0190a3b4-0000-7000-8000-000000000001"
	for b.Loop() {
		ValidStamp(s)
	}
}

// The error about a malformed stamp shows the format, with an example
// that is itself a valid stamp.
func TestParseStampSaysFormat(t *testing.T) {
	_, _, _, err := ParseStamp("x")
	if err == nil || !strings.Contains(err.Error(), StampFormat) {
		t.Fatalf("ParseStamp(x) = %v, want the format %q", err, StampFormat)
	}
	example := StampFormat[strings.LastIndex(StampFormat, " ")+1:]
	if !ValidStamp(example) {
		t.Errorf("the format's example %q is not a valid stamp", example)
	}
}
