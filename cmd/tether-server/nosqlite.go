//go:build !cgo

package main

import (
	"errors"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server"
)

// openSQLite refuses: this binary was built without cgo, which the SQLite
// store needs.
func openSQLite(path string, _ entity.Schema) (server.Store, error) {
	return nil, errors.New("-db " + path + ": this tether-server was built without cgo and serves only postgres:// and mysql:// databases; build it with CGO_ENABLED=1 for SQLite")
}
