//go:build cgo

package main

import (
	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/sqlitestore"
)

// openSQLite opens the embedded store. It needs cgo; a binary built
// without it serves PostgreSQL and MySQL only.
func openSQLite(path string, schema entity.Schema) (server.Store, error) {
	return sqlitestore.Open(path, schema, sqlitestore.Options{})
}
