// Package sqlbatch writes many rows with multi-row INSERT statements:
// one statement per chunk of rows instead of one per row, which saves most
// of the per-statement cost of SQLite through cgo.
package sqlbatch
