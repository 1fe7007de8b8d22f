//go:build sqlite_trace && cgo && !tether_purego

package e2e

import (
	"database/sql"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/mattn/go-sqlite3"

	"github.com/tethersync/tether/internal/sqlitedriver"
)

// stmtCounter counts the SQL statements SQLite runs, split by database
// file: the server's (server.db) and the devices'.
type stmtCounter struct {
	mu             sync.Mutex
	device, server int
	texts          map[string]int
	nanos          map[string]int64   // the time statements took to run, by text
	running        map[uintptr]string // the text of each statement handle that ran
}

var (
	counterOnce sync.Once
	counter     = &stmtCounter{texts: map[string]int{}, nanos: map[string]int64{}, running: map[uintptr]string{}}
)

// countStatements hooks every new go-sqlite3 connection of the process to
// count the statements it runs. It must be called before any connection
// is opened.
func countStatements(b *testing.B) *stmtCounter {
	counterOnce.Do(func() {
		db, err := sql.Open("sqlite3", ":memory:")
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		trace := func(c *sqlite3.SQLiteConn) error {
			server := strings.HasSuffix(c.GetFilename("main"), "server.db")
			return c.SetTrace(&sqlite3.TraceConfig{EventMask: sqlite3.TraceStmt | sqlite3.TraceProfile, Callback: func(info sqlite3.TraceInfo) int {
				if info.EventCode == sqlite3.TraceProfile {
					counter.took(info.StmtHandle, info.RunTimeNanosec)
				} else {
					counter.add(server, info.StmtHandle, info.StmtOrTrigger)
				}
				return 0
			}})
		}
		drv := db.Driver().(*sqlite3.SQLiteDriver) // the driver every sql.Open("sqlite3") shares
		drv.ConnectHook = trace
		// The SQLite server's writer opens through a driver of its own
		// (automatic checkpoints off): its hook runs first.
		nockpt, err := sql.Open(sqlitedriver.NoCheckpointDriver, ":memory:")
		if err != nil {
			b.Fatal(err)
		}
		defer nockpt.Close()
		drv2 := nockpt.Driver().(*sqlite3.SQLiteDriver)
		own := drv2.ConnectHook
		drv2.ConnectHook = func(c *sqlite3.SQLiteConn) error {
			if err := own(c); err != nil {
				return err
			}
			return trace(c)
		}
	})
	return counter
}

func (s *stmtCounter) took(stmt uintptr, nanos int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nanos[s.running[stmt]] += nanos
}

func (s *stmtCounter) add(server bool, stmt uintptr, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() {
		if !strings.HasPrefix(text, "-- TRIGGER") {
			s.running[stmt] = text
		}
	}()
	if server {
		s.server++
		text = "server: " + text
	} else {
		s.device++
		text = "device: " + text
	}
	s.texts[text]++
}

func (s *stmtCounter) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.device, s.server = 0, 0
	clear(s.texts)
	clear(s.nanos)
}

// report reports the statements per op and, when SMALLSYNC_STMTS names a
// file, writes each statement's count there.
func (s *stmtCounter) report(b *testing.B) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b.ReportMetric(float64(s.device)/float64(b.N), "device-stmts/op")
	b.ReportMetric(float64(s.server)/float64(b.N), "server-stmts/op")
	path := os.Getenv("SMALLSYNC_STMTS")
	if path == "" {
		return
	}
	var lines []string
	for text, n := range s.texts {
		lines = append(lines, fmt.Sprintf("%7.2f %8.1fus  %s", float64(n)/float64(b.N), float64(s.nanos[text])/1e3/float64(b.N), strings.Join(strings.Fields(text), " ")))
	}
	sort.Strings(lines)
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
}
