// Package sqlident quotes SQL identifiers (table, column, index and
// trigger names) the standard way, which SQLite, PostgreSQL and MySQL in
// ANSI_QUOTES mode all accept.
package sqlident
