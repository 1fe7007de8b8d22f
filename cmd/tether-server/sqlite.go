package main

import (
	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/sqlitestore"
)

// openSQLite opens the embedded store, on the SQLite driver the binary was
// built with (cgo or pure Go).
func openSQLite(path string, schema entity.Schema) (server.Store, error) {
	return sqlitestore.Open(path, schema, sqlitestore.Options{})
}
