package entity

import (
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"time"
)

// codec converts one struct field to and from its canonical column value.
type codec struct {
	kind     Kind
	nullable bool
	get      func(reflect.Value) (any, error)
	set      func(reflect.Value, any) error
}

var (
	timeType    = reflect.TypeOf(time.Time{})
	bytesType   = reflect.TypeOf([]byte(nil))
	scannerType = reflect.TypeOf((*sql.Scanner)(nil)).Elem()
	valuerType  = reflect.TypeOf((*driver.Valuer)(nil)).Elem()
)

func codecFor(t reflect.Type) (codec, error) {
	if t.Kind() == reflect.Pointer && t.Elem().Kind() != reflect.Pointer {
		inner, err := codecFor(t.Elem())
		if err != nil {
			return codec{}, err
		}
		if inner.nullable {
			return codec{}, fmt.Errorf("unsupported type %s: pointer to a nullable type", t)
		}
		return pointerCodec(t, inner), nil
	}
	if t.Implements(valuerType) && reflect.PointerTo(t).Implements(scannerType) {
		return valuerCodec(t), nil
	}
	switch {
	case t == timeType:
		return codec{kind: KindTime, get: getTime, set: setTime}, nil
	case t == bytesType:
		return codec{kind: KindBlob, get: getBytes, set: setBytes}, nil
	}
	switch t.Kind() {
	case reflect.String:
		return codec{kind: KindText, get: getString, set: setString}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return codec{kind: KindInteger, get: getInt, set: setInt}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return codec{kind: KindInteger, get: getUint, set: setUint}, nil
	case reflect.Float32, reflect.Float64:
		return codec{kind: KindReal, get: getFloat, set: setFloat}, nil
	case reflect.Bool:
		return codec{kind: KindBool, get: getBool, set: setBool}, nil
	}
	return codec{}, fmt.Errorf("unsupported type %s (tag `db:\",json\"` stores it as JSON)", t)
}

func pointerCodec(t reflect.Type, inner codec) codec {
	return codec{
		kind:     inner.kind,
		nullable: true,
		get: func(v reflect.Value) (any, error) {
			if v.IsNil() {
				return nil, nil
			}
			return inner.get(v.Elem())
		},
		set: func(v reflect.Value, x any) error {
			if x == nil {
				v.SetZero()
				return nil
			}
			p := reflect.New(t.Elem())
			if err := inner.set(p.Elem(), x); err != nil {
				return err
			}
			v.Set(p)
			return nil
		},
	}
}

func jsonCodec(t reflect.Type) codec {
	nullable := t.Kind() == reflect.Pointer || t.Kind() == reflect.Map || t.Kind() == reflect.Slice || t.Kind() == reflect.Interface
	return codec{
		kind:     KindJSON,
		nullable: nullable,
		get: func(v reflect.Value) (any, error) {
			if nullable && v.IsNil() {
				return nil, nil
			}
			b, err := json.Marshal(v.Interface())
			if err != nil {
				return nil, err
			}
			return string(b), nil
		},
		set: func(v reflect.Value, x any) error {
			v.SetZero()
			if x == nil {
				return nil
			}
			s, ok := x.(string)
			if !ok {
				return fmt.Errorf("want JSON text, got %T", x)
			}
			return json.Unmarshal([]byte(s), v.Addr().Interface())
		},
	}
}

// valuerCodec handles types implementing driver.Valuer and sql.Scanner. The
// kind is that of the value the type returns: from its zero value, or when
// that is nil (sql.NullInt64), after scanning a probe value into it. Text
// when nothing else fits.
func valuerCodec(t reflect.Type) codec {
	kind := probeKind(t)
	return codec{
		kind:     kind,
		nullable: true,
		get: func(v reflect.Value) (any, error) {
			x, err := v.Interface().(driver.Valuer).Value()
			if err != nil || x == nil {
				return nil, err
			}
			if tm, ok := x.(time.Time); ok {
				return FormatTime(tm), nil
			}
			return kind.FromDB(x)
		},
		set: func(v reflect.Value, x any) error {
			if s, ok := x.(string); ok && kind == KindTime {
				tm, err := ParseTime(s)
				if err != nil {
					return err
				}
				x = tm
			}
			return v.Addr().Interface().(sql.Scanner).Scan(x)
		},
	}
}

func getString(v reflect.Value) (any, error) { return v.String(), nil }
func setString(v reflect.Value, x any) error {
	s, ok := x.(string)
	if !ok {
		return fmt.Errorf("want string, got %T", x)
	}
	v.SetString(s)
	return nil
}

func getInt(v reflect.Value) (any, error) { return v.Int(), nil }
func setInt(v reflect.Value, x any) error {
	i, ok := x.(int64)
	if !ok {
		return fmt.Errorf("want integer, got %T", x)
	}
	if v.OverflowInt(i) {
		return fmt.Errorf("integer %d overflows %s", i, v.Type())
	}
	v.SetInt(i)
	return nil
}

func getUint(v reflect.Value) (any, error) {
	u := v.Uint()
	if u > math.MaxInt64 {
		return nil, fmt.Errorf("unsigned value %d exceeds the 64-bit signed range", u)
	}
	return int64(u), nil
}
func setUint(v reflect.Value, x any) error {
	i, ok := x.(int64)
	if !ok {
		return fmt.Errorf("want integer, got %T", x)
	}
	if i < 0 || v.OverflowUint(uint64(i)) {
		return fmt.Errorf("integer %d overflows %s", i, v.Type())
	}
	v.SetUint(uint64(i))
	return nil
}

func getFloat(v reflect.Value) (any, error) {
	f := v.Float()
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("cannot store %v", f)
	}
	return f, nil
}
func setFloat(v reflect.Value, x any) error {
	switch f := x.(type) {
	case float64:
		v.SetFloat(f)
	case int64:
		v.SetFloat(float64(f))
	default:
		return fmt.Errorf("want real, got %T", x)
	}
	return nil
}

func getBool(v reflect.Value) (any, error) { return v.Bool(), nil }
func setBool(v reflect.Value, x any) error {
	b, ok := x.(bool)
	if !ok {
		return fmt.Errorf("want bool, got %T", x)
	}
	v.SetBool(b)
	return nil
}

func getTime(v reflect.Value) (any, error) { return FormatTime(v.Interface().(time.Time)), nil }
func setTime(v reflect.Value, x any) error {
	s, ok := x.(string)
	if !ok {
		return fmt.Errorf("want time text, got %T", x)
	}
	t, err := ParseTime(s)
	if err != nil {
		return err
	}
	v.Set(reflect.ValueOf(t))
	return nil
}

func getBytes(v reflect.Value) (any, error) {
	if v.IsNil() {
		return []byte{}, nil
	}
	return append([]byte{}, v.Bytes()...), nil
}
func setBytes(v reflect.Value, x any) error {
	b, ok := x.([]byte)
	if !ok {
		return fmt.Errorf("want blob, got %T", x)
	}
	v.SetBytes(append([]byte(nil), b...))
	return nil
}

func probeKind(t reflect.Type) Kind {
	probes := []any{nil, int64(0), time.Time{}, []byte{}}
	for _, p := range probes {
		v := reflect.New(t)
		if p != nil && v.Interface().(sql.Scanner).Scan(p) != nil {
			continue
		}
		x, err := v.Elem().Interface().(driver.Valuer).Value()
		if err != nil || x == nil {
			continue
		}
		switch x.(type) {
		case int64:
			return KindInteger
		case float64:
			return KindReal
		case bool:
			return KindBool
		case []byte:
			return KindBlob
		case time.Time:
			return KindTime
		}
		return KindText
	}
	return KindText
}
