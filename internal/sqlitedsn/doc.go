// Package sqlitedsn builds SQLite "file:" data source names from a path and
// query parameters. Which parameters to use depends on the driver:
// internal/sqlitedriver chooses them.
package sqlitedsn
