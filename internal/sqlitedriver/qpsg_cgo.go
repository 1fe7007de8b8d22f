//go:build cgo && !tether_purego

package sqlitedriver

/*
typedef struct sqlite3 sqlite3;
typedef struct sqlite3_api_routines sqlite3_api_routines;
extern int sqlite3_auto_extension(void (*)(void));
extern int sqlite3_db_config(sqlite3 *, int, ...);
extern const char *sqlite3_db_filename(sqlite3 *, const char *);
extern int sqlite3_uri_boolean(const char *, const char *, int);

// tether_qpsg turns on SQLite's query planner stability guarantee
// (SQLITE_DBCONFIG_ENABLE_QPSG, 1007) on a new connection whose URI asks
// for it (qpsgParam).
static int tether_qpsg(sqlite3 *db, char **err, const sqlite3_api_routines *api) {
	const char *f = sqlite3_db_filename(db, "main");
	if (f && f[0] && sqlite3_uri_boolean(f, "tether_qpsg", 0)) {
		return sqlite3_db_config(db, 1007, 1, (int *)0);
	}
	return 0;
}

static int tether_register_qpsg(void) {
	return sqlite3_auto_extension((void (*)(void))tether_qpsg);
}
*/
import "C"

import (
	"fmt"
	"sync"
)

// qpsgParam is the URI parameter of a DSN whose connections keep their
// compiled statements (see Config.Stable): an automatic extension, which
// SQLite runs on each connection it opens, reads it there and turns the
// query planner stability guarantee on. A connection without it is left
// as SQLite opens it: the app's own connections to other databases.
const qpsgParam = "tether_qpsg"

// registerQPSG registers the extension, once, when a Config first asks
// for Stable: registering initializes SQLite, which a program that
// configures SQLite itself (sqlite3_config) must be able to do first.
var registerQPSG = sync.OnceValue(func() error {
	if rc := C.tether_register_qpsg(); rc != 0 {
		return fmt.Errorf("sqlitedriver: register the planner-stability extension: SQLite error %d", int(rc))
	}
	return nil
})
