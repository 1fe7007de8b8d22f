// Package entity turns an application's plain Go structs into synced tables.
//
// A struct becomes a synced entity by embedding [Meta] with a sync tag naming
// its table and priority, and by having a string ID field:
//
//	type Customer struct {
//		entity.Meta `sync:"customers,1"` // table, priority: lower syncs first
//		ID    string   `db:"id"`
//		Name  string   `db:"name"`
//		Email *string  `db:"email"`     // pointer = nullable
//		Tags  []string `db:"tags,json"` // stored as JSON text
//	}
//
// [Registry.Register] checks every declaration and returns an error naming
// the offending field. The registry then derives a [Schema]: the table
// descriptions that both the local store and the server build tables from.
// A Schema marshals to JSON so a server binary can load it from a file.
//
// # Column types
//
// Each column has a [Kind]: text, integer, real, bool, time, blob or json.
// Go strings are text; all int and uint types are integer; floats are real;
// time.Time is time (stored in UTC with nanosecond precision); []byte is blob;
// fields tagged `db:",json"` are json. A pointer to any of them is nullable.
// Types implementing both [database/sql.Scanner] and [database/sql/driver.Valuer]
// take the kind of the value their zero value returns (text when nil).
//
// # Values
//
// Values travel in a canonical form shared by every layer: string, int64,
// float64, bool, []byte, or nil. Time values are strings in [TimeFormat] and
// json values are strings of JSON text. [Kind.FromWire] validates and
// converts a value decoded from JSON into that form.
package entity
