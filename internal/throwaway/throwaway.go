package throwaway

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Server is a running database server.
type Server interface {
	// NewDatabase creates an empty database and returns how to reach it.
	NewDatabase() (string, error)
	// Stop stops the server and removes its files.
	Stop()
}

// Shared is one server of kind S for a whole test binary.
type Shared[S Server] struct {
	// Name names the database in messages: "PostgreSQL", "MariaDB".
	Name string
	// RequireEnv is the environment variable that, set to 1, turns a skip
	// into a failure.
	RequireEnv string
	// NoBinaries is the error Start returns when the machine lacks the
	// server's binaries: callers are then skipped.
	NoBinaries error
	// Start starts a server.
	Start func() (S, error)

	mu      sync.Mutex
	started S
	running bool
	failed  error
}

// Database returns a new, empty database on the shared server, starting
// the server on first use. It skips t when the binaries are missing,
// unless RequireEnv is 1, and fails it when the server cannot start.
func (s *Shared[S]) Database(t testing.TB) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running && s.failed == nil {
		s.started, s.failed = s.Start()
		s.running = s.failed == nil
	}
	if s.failed != nil {
		if errors.Is(s.failed, s.NoBinaries) && os.Getenv(s.RequireEnv) != "1" {
			t.Skipf("%v; install %s or set %s=1 to fail instead of skipping", s.failed, s.Name, s.RequireEnv)
		}
		t.Fatalf("%s: %v", s.Name, s.failed)
	}
	db, err := s.started.NewDatabase()
	if err != nil {
		t.Fatalf("%s: %v", s.Name, err)
	}
	return db
}

// Stop stops the shared server, if it was started.
func (s *Shared[S]) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		s.started.Stop()
		s.running = false
	}
}

// Main runs the tests of a package and stops the shared servers
// afterwards. Call it from TestMain: os.Exit(throwaway.Main(m, stops...)).
func Main(m *testing.M, stops ...func()) int {
	code := m.Run()
	for _, stop := range stops {
		stop()
	}
	return code
}

// IsFile reports whether p is a file.
func IsFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// Credential returns the user to run a database server as: the current
// one, or when that is root (which database servers refuse) the first of
// users that exists.
func Credential(server string, users ...string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range users {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, fmt.Errorf("running as root, and none of the users %s to run %s as", strings.Join(users, ", "), server)
}

// FreePort returns a TCP port free on the loopback address.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
