package wire

import (
	"fmt"
	"strconv"
)

// A clock stamp is a reading of a device's hybrid logical clock, carried
// by every row (Row.HLC) in text form:
//
//	1700000000000.000001.0190a3b4-0000-7000-8000-000000000001
//
// 13 digits of physical milliseconds since the Unix epoch, a dot, 6 digits
// of counter, a dot, and the id of the device whose clock made it: 1 to
// 64 ASCII letters, digits and dashes. Text order is causal order, and
// ties between devices are broken by the device id, so every replica
// orders stamps the same way.
const (
	// MaxStampCounter is the largest counter a stamp holds.
	MaxStampCounter = 999999
	// MaxStampDevice is the longest device id a stamp holds, in bytes.
	MaxStampDevice = 64

	stampMillis  = 13                             // digits of milliseconds
	stampCounter = 6                              // digits of counter
	stampDevice  = stampMillis + stampCounter + 2 // where the device id starts
)

// FormatStamp returns the clock stamp of ms milliseconds, counter and
// device. It does not check its arguments: ms must be in [0, 10^13),
// counter in [0, MaxStampCounter] and device a valid device id for the
// result to be a valid stamp.
func FormatStamp(ms, counter int64, device string) string {
	return fmt.Sprintf("%013d.%06d.%s", ms, counter, device)
}

// ParseStamp returns the milliseconds, counter and device id of stamp s.
// It returns an error when s is not a stamp. Like ValidStamp, it does not
// allocate for a valid stamp.
func ParseStamp(s string) (ms, counter int64, device string, err error) {
	if !ValidStamp(s) {
		return 0, 0, "", fmt.Errorf("malformed clock stamp %q: want %s", s, StampFormat)
	}
	// Only digits: neither can fail nor overflow.
	ms, _ = strconv.ParseInt(s[:stampMillis], 10, 64)
	counter, _ = strconv.ParseInt(s[stampMillis+1:stampDevice-1], 10, 64)
	return ms, counter, s[stampDevice:], nil
}

// ValidStamp reports whether s is a clock stamp. It is cheap (no regular
// expression, no allocation): the server checks every pushed row with it.
func ValidStamp(s string) bool {
	if len(s) < stampDevice+1 || len(s) > stampDevice+MaxStampDevice ||
		s[stampMillis] != '.' || s[stampDevice-1] != '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case i == stampMillis || i == stampDevice-1:
		case i < stampDevice:
			if c < '0' || c > '9' {
				return false
			}
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-':
		default:
			return false
		}
	}
	return true
}
