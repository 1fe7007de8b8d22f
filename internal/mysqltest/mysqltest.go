package mysqltest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/tethersync/tether/internal/throwaway"
)

// RequireEnv is the environment variable that turns a skip into a failure.
const RequireEnv = "TETHER_REQUIRE_MYSQL"

var shared = &throwaway.Shared[*Server]{Name: "MariaDB", RequireEnv: RequireEnv, NoBinaries: ErrNoBinaries, Start: Start}

// Server is a running throwaway MariaDB or MySQL server.
type Server struct {
	dir  string
	port int
	cmd  *exec.Cmd
	done chan error

	mu  sync.Mutex
	dbs int
}

// Main runs the tests of a package and stops the server afterwards. Call it
// from TestMain: os.Exit(mysqltest.Main(m)).
func Main(m *testing.M) int { return throwaway.Main(m, Stop) }

// URL returns the go-sql-driver/mysql DSN of a new, empty database on the
// test server, starting the server on first use. It skips t (or fails it,
// under TETHER_REQUIRE_MYSQL=1) when MariaDB is not installed.
func URL(t testing.TB) string {
	t.Helper()
	return shared.Database(t)
}

// DSN is URL: the data source name of a new, empty database, in the form
// go-sql-driver/mysql takes (it is not a URL).
func DSN(t testing.TB) string {
	t.Helper()
	return URL(t)
}

// NewDatabase creates an empty database and returns its DSN.
func (s *Server) NewDatabase() (string, error) {
	s.mu.Lock()
	s.dbs++
	name := fmt.Sprintf("db_%d_%d", os.Getpid(), s.dbs)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.exec(ctx, s.dsn(""), "CREATE DATABASE "+name+" CHARACTER SET utf8mb4"); err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	return s.dsn(name), nil
}

// Stop stops the server URL started, if any, and removes its directory.
func Stop() { shared.Stop() }

// dsn is the DSN of database db over TCP, as root without a password.
func (s *Server) dsn(db string) string {
	return fmt.Sprintf("root@tcp(127.0.0.1:%d)/%s?parseTime=true&multiStatements=false", s.port, db)
}

// socketDSN is the DSN of no database over the server's unix socket, which
// the root@localhost account matches whatever the server makes of
// 127.0.0.1.
func (s *Server) socketDSN() string {
	return "root@unix(" + s.socket() + ")/"
}

func (s *Server) socket() string { return filepath.Join(s.dir, "sock") }

// exec runs statements, each on its own, on a connection of its own.
func (s *Server) exec(ctx context.Context, dsn string, stmts ...string) error {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// ErrNoBinaries means MariaDB (or MySQL) is not installed where Start looks.
var ErrNoBinaries = errors.New("no MariaDB binaries (mariadbd or mysqld, and mariadb-install-db or mysql_install_db) on PATH or under /usr/sbin or /usr/bin")

// find returns the path of the first of names on PATH, else under /usr/sbin
// or /usr/bin, or "".
func find(names ...string) string {
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		for _, name := range names {
			if p := filepath.Join(dir, name); throwaway.IsFile(p) {
				return p
			}
		}
	}
	return ""
}

// binaries returns the server binary and, for MariaDB, the script that
// initializes a data directory; for Oracle's MySQL, which initializes with
// mysqld --initialize-insecure, install is "".
func binaries() (server, install string, err error) {
	server = find("mariadbd", "mysqld")
	if server == "" {
		return "", "", ErrNoBinaries
	}
	out, err := exec.Command(server, "--no-defaults", "--version").CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("%s --version: %v: %s", server, err, out)
	}
	if !strings.Contains(string(out), "MariaDB") {
		return server, "", nil
	}
	install = find("mariadb-install-db", "mysql_install_db")
	if install == "" {
		return "", "", ErrNoBinaries
	}
	return server, install, nil
}

// credential returns the user to run the server as: the current one, or
// when that is root (which the server refuses) mysql or nobody.
func credential() (*syscall.Credential, error) {
	return throwaway.Credential("MariaDB", "mysql", "nobody")
}

// tuning are the server options, for the initialization too, that make a
// small, fast, throwaway server: nothing here needs to survive a crash.
var tuning = []string{
	"--character-set-server=utf8mb4",
	"--skip-name-resolve",
	"--performance-schema=OFF",
	"--skip-log-bin",
	"--sync-binlog=0",
	"--innodb-buffer-pool-size=256M",
	"--innodb-log-file-size=8M",
	"--innodb-flush-log-at-trx-commit=0",
	"--innodb-doublewrite=0",
	// Containers may forbid io_uring and libaio; the simulated kind
	// always works and is as good for a test.
	"--innodb-use-native-aio=0",
}

// Start initializes a data directory in a new temporary directory and
// starts a server for it on a free loopback port (and a unix socket in the
// directory), as the current user, or as the mysql (else nobody) user when
// running as root. root has no password. Stop it with Stop, which also
// removes the directory.
func Start() (*Server, error) {
	server, install, err := binaries()
	if err != nil {
		return nil, err
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tether-mysql-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	command := func(path string, args ...string) *exec.Cmd {
		cmd := exec.Command(path, args...)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
		return cmd
	}
	// --no-defaults must come first: no my.cnf of the machine applies.
	data := filepath.Join(dir, "data")
	var initCmd *exec.Cmd
	if install != "" {
		initCmd = command(install, append([]string{"--no-defaults", "--datadir=" + data,
			"--auth-root-authentication-method=normal", "--skip-test-db"}, tuning...)...)
	} else {
		initCmd = command(server, append([]string{"--no-defaults", "--datadir=" + data,
			"--initialize-insecure"}, tuning...)...)
	}
	if out, err := initCmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%s: %v: %s", filepath.Base(initCmd.Path), err, out)
	}
	if s.port, err = throwaway.FreePort(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.cmd = command(server, append([]string{"--no-defaults", "--datadir=" + data,
		"--port=" + strconv.Itoa(s.port), "--bind-address=127.0.0.1", "--skip-networking=0",
		"--socket=" + s.socket(), "--pid-file=" + filepath.Join(dir, "pid"), "--tmpdir=" + dir,
		"--max-connections=300"}, tuning...)...)
	logFile, err := os.Create(filepath.Join(dir, "mysqld.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		logFile.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", filepath.Base(server), err)
	}
	s.done = make(chan error, 1)
	go func() { s.done <- s.cmd.Wait(); logFile.Close() }()
	if err := s.waitReady(30 * time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "mysqld.log"))
		s.Stop()
		return nil, fmt.Errorf("%w; server log:\n%s", err, log)
	}
	return s, nil
}

// waitReady waits until the server answers on its socket, makes sure root
// may connect from 127.0.0.1 without a password (MariaDB's initialization
// does that already; MySQL's makes only root@localhost), and checks that it
// can.
func (s *Server) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := s.exec(ctx, s.socketDSN(),
			"CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'",
			"GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
		cancel()
		if err == nil {
			break
		}
		var merr *mysql.MySQLError
		if errors.As(err, &merr) {
			return fmt.Errorf("grant root@127.0.0.1: %w", err)
		}
		select {
		case werr := <-s.done:
			s.done <- werr
			return fmt.Errorf("%s exited: %v", filepath.Base(s.cmd.Path), werr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %w", filepath.Base(s.cmd.Path), limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := sql.Open("mysql", s.dsn(""))
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping over tcp: %w", err)
	}
	return nil
}

// Stop stops the server and removes its directory.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGTERM) // shutdown
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
