//go:build !cgo

package admin

import (
	"context"
	"errors"

	"github.com/tethersync/tether/server/sqlstore"
)

// openSQLite refuses: this binary was built without cgo, which the SQLite
// store needs.
func openSQLite(_ context.Context, path string) (*sqlstore.Store, error) {
	return nil, errors.New(path + ": this binary was built without cgo and reads only postgres:// and mysql:// databases; build it with CGO_ENABLED=1 for SQLite")
}
