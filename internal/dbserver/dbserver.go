package dbserver

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Kind is a kind of database server.
type Kind string

// The kinds of server Start starts.
const (
	Postgres Kind = "postgres" // PostgreSQL; databases are postgres:// URLs
	MariaDB  Kind = "mariadb"  // MariaDB or MySQL; databases are go-sql-driver/mysql DSNs
)

// ErrNoBinaries means the machine has no binaries of the kind of server
// asked for where Start looks; Start's error wraps it.
var ErrNoBinaries = errors.New("dbserver: no binaries")

// Server is a running throwaway database server. Its methods are safe for
// concurrent use.
type Server struct {
	kind Kind
	dir  string
	port int
	cmd  *exec.Cmd
	done chan error // the process's exit, sent once and put back by readers

	mu  sync.Mutex
	dbs int
}

// Start initializes a data directory in a new temporary directory and
// starts a server of kind for it on a free loopback port, as the current
// user, or as the server's own user (else nobody) when running as root.
// Stop it with Stop, which also removes the directory. The error wraps
// ErrNoBinaries when the server is not installed.
func Start(kind Kind) (*Server, error) {
	switch kind {
	case Postgres:
		return startPostgres()
	case MariaDB:
		return startMariaDB()
	}
	return nil, fmt.Errorf("dbserver: unknown kind %q", kind)
}

// Kind returns the kind of the server.
func (s *Server) Kind() Kind { return s.kind }

// NewDatabase creates an empty database and returns how to reach it: a
// postgres:// URL for PostgreSQL, a go-sql-driver/mysql DSN for MariaDB.
func (s *Server) NewDatabase() (string, error) {
	s.mu.Lock()
	s.dbs++
	name := fmt.Sprintf("db_%d_%d", os.Getpid(), s.dbs)
	s.mu.Unlock()
	if s.kind == Postgres {
		return s.newPostgresDatabase(name)
	}
	return s.newMariaDBDatabase(name)
}

// Stop stops the server and removes its directory. It waits up to 20
// seconds for a clean shutdown, then kills the server.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		sig := syscall.SIGTERM // MariaDB's shutdown
		if s.kind == Postgres {
			sig = syscall.SIGINT // PostgreSQL's fast shutdown
		}
		s.cmd.Process.Signal(sig)
		select {
		case werr := <-s.done:
			s.done <- werr
		case <-time.After(20 * time.Second):
			s.cmd.Process.Kill()
			s.done <- <-s.done
		}
	}
	os.RemoveAll(s.dir)
}

// newServer makes the temporary directory of a server of kind, owned by
// the user it will run as.
func newServer(kind Kind, users ...string) (*Server, *account, error) {
	cred, err := credential(string(kind), users...)
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "tether-"+string(kind)+"-")
	if err != nil {
		return nil, nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, cred.uid, cred.gid); err != nil {
			os.RemoveAll(dir)
			return nil, nil, err
		}
	}
	s := &Server{kind: kind, dir: dir}
	if s.port, err = freePort(); err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return s, cred, nil
}

// command returns a command running path in the server's directory as cred,
// killed when this process dies where the platform can (sysProcAttr).
func (s *Server) command(cred *account, path string, args ...string) *exec.Cmd {
	cmd := exec.Command(path, args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = sysProcAttr(cred)
	return cmd
}

// account is a user to run a server process as.
type account struct{ uid, gid int }

// launch starts the server process cmd, its output to logName in the
// directory, and waits for ready to succeed; on failure it stops the server
// and returns the error with the server's log.
func (s *Server) launch(cmd *exec.Cmd, logName string, ready func() error) error {
	logPath := filepath.Join(s.dir, logName)
	logFile, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(s.dir)
		return err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		os.RemoveAll(s.dir)
		return fmt.Errorf("start %s: %w", filepath.Base(cmd.Path), err)
	}
	s.cmd = cmd
	s.done = make(chan error, 1)
	go func() { s.done <- cmd.Wait(); logFile.Close() }()
	if err := ready(); err != nil {
		log, _ := os.ReadFile(logPath)
		s.Stop()
		return fmt.Errorf("%w; server log:\n%s", err, log)
	}
	return nil
}

// poll calls try until it succeeds, the server exits, try's error is
// final, or limit passes.
func (s *Server) poll(limit, every time.Duration, try func() (final bool, err error)) error {
	name := filepath.Base(s.cmd.Path)
	deadline := time.Now().Add(limit)
	for {
		final, err := try()
		if err == nil || final {
			return err
		}
		select {
		case werr := <-s.done:
			s.done <- werr
			return fmt.Errorf("%s exited: %v", name, werr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %w", name, limit, err)
		}
		time.Sleep(every)
	}
}

// isFile reports whether p is a file.
func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// credential returns the user to run a database server as: the current
// one, or when that is root (which database servers refuse) the first of
// users that exists.
func credential(server string, users ...string) (*account, error) {
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
		return &account{uid: uid, gid: gid}, nil
	}
	return nil, fmt.Errorf("running as root, and none of the users %s to run %s as", strings.Join(users, ", "), server)
}

// freePort returns a TCP port free on the loopback address.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
