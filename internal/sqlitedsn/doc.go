// Package sqlitedsn builds data source names for the go-sqlite3 driver
// (github.com/mattn/go-sqlite3), the one place where tether spells them.
package sqlitedsn
