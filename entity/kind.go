package entity

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Kind is the storage type of a column.
type Kind string

// The column kinds.
const (
	KindText    Kind = "text"
	KindInteger Kind = "integer"
	KindReal    Kind = "real"
	KindBool    Kind = "bool"
	KindTime    Kind = "time"
	KindBlob    Kind = "blob"
	KindJSON    Kind = "json"
)

// TimeFormat is the canonical text form of time values: UTC, fixed width,
// nanosecond precision, so that text order is time order.
const TimeFormat = "2006-01-02T15:04:05.000000000Z"

// Valid reports whether k is one of the known kinds.
func (k Kind) Valid() bool {
	switch k {
	case KindText, KindInteger, KindReal, KindBool, KindTime, KindBlob, KindJSON:
		return true
	}
	return false
}

// FormatTime returns t in the canonical [TimeFormat].
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

// ParseTime parses a time in [TimeFormat] or RFC 3339.
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse time %q: %w", s, err)
	}
	return t.UTC(), nil
}

// SQLiteType returns the SQLite column type that stores values of kind k.
func (k Kind) SQLiteType() string {
	switch k {
	case KindInteger, KindBool:
		return "INTEGER"
	case KindReal:
		return "REAL"
	case KindBlob:
		return "BLOB"
	}
	return "TEXT"
}

// FromWire converts a value decoded from JSON (with json.Decoder.UseNumber,
// or a json.RawMessage) into the canonical form of kind k. It returns an
// error naming the expected kind when v does not fit.
func (k Kind) FromWire(v any) (any, error) {
	if raw, ok := v.(json.RawMessage); ok {
		var x any
		if err := unmarshalNumber(raw, &x); err != nil {
			return nil, fmt.Errorf("want %s, %s: %w", k, k.WireFormat(), err)
		}
		v = x
	}
	if v == nil {
		return nil, nil
	}
	switch k {
	case KindText:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case KindInteger:
		if n, ok := v.(json.Number); ok {
			i, err := strconv.ParseInt(string(n), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("want integer, %s, got %s", k.WireFormat(), n)
			}
			return i, nil
		}
	case KindReal:
		if n, ok := v.(json.Number); ok {
			f, err := strconv.ParseFloat(string(n), 64)
			if err != nil || math.IsInf(f, 0) {
				return nil, fmt.Errorf("want real, %s, got %s", k.WireFormat(), n)
			}
			return f, nil
		}
	case KindBool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case KindTime:
		if s, ok := v.(string); ok {
			t, err := ParseTime(s)
			if err != nil {
				return nil, fmt.Errorf("want time, %s: %w", k.WireFormat(), err)
			}
			return FormatTime(t), nil
		}
	case KindBlob:
		if s, ok := v.(string); ok {
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return nil, fmt.Errorf("want blob, %s: %w", k.WireFormat(), err)
			}
			return b, nil
		}
	case KindJSON:
		if s, ok := v.(string); ok {
			if !json.Valid([]byte(s)) {
				return nil, fmt.Errorf("want json, %s, got a string that is not JSON", k.WireFormat())
			}
			return s, nil
		}
	}
	return nil, fmt.Errorf("want %s, %s, got %s", k, k.WireFormat(), jsonType(v))
}

// FromDB converts a value scanned from a SQL driver into the canonical form
// of kind k.
func (k Kind) FromDB(v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch k {
	case KindText, KindJSON:
		switch x := v.(type) {
		case string:
			return x, nil
		case []byte:
			return string(x), nil
		}
	case KindInteger:
		switch x := v.(type) {
		case int64:
			return x, nil
		case int32:
			return int64(x), nil
		case int16:
			return int64(x), nil
		}
	case KindReal:
		switch x := v.(type) {
		case float64:
			return x, nil
		case float32:
			return float64(x), nil
		case int64:
			return float64(x), nil
		}
	case KindBool:
		switch x := v.(type) {
		case bool:
			return x, nil
		case int64:
			return x != 0, nil
		}
	case KindTime:
		switch x := v.(type) {
		case string:
			return x, nil
		case []byte:
			return string(x), nil
		case time.Time:
			return FormatTime(x), nil
		}
	case KindBlob:
		switch x := v.(type) {
		case []byte:
			return append([]byte(nil), x...), nil
		case string:
			return []byte(x), nil
		}
	}
	return nil, fmt.Errorf("want %s, got %T from database", k, v)
}

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case json.Number, float64:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

func unmarshalNumber(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec.Decode(v)
}
