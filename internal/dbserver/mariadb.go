package dbserver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

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
			if p := filepath.Join(dir, name); isFile(p) {
				return p
			}
		}
	}
	return ""
}

var errNoMariaDB = fmt.Errorf("%w: no MariaDB binaries (mariadbd or mysqld, and mariadb-install-db or mysql_install_db) on PATH or under /usr/sbin or /usr/bin", ErrNoBinaries)

// mariaDBBinaries returns the server binary and, for MariaDB, the script
// that initializes a data directory; for Oracle's MySQL, which initializes
// with mysqld --initialize-insecure, install is "".
func mariaDBBinaries() (server, install string, err error) {
	server = find("mariadbd", "mysqld")
	if server == "" {
		return "", "", errNoMariaDB
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
		return "", "", errNoMariaDB
	}
	return server, install, nil
}

// mariaDBTuning are the server options, for the initialization too, that
// make a small, fast, throwaway server: nothing here needs to survive a
// crash.
var mariaDBTuning = []string{
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

// startMariaDB initializes a data directory and starts its server, on the
// port and on a unix socket in the directory; root has no password.
func startMariaDB() (*Server, error) {
	server, install, err := mariaDBBinaries()
	if err != nil {
		return nil, err
	}
	s, cred, err := newServer(MariaDB, "mysql", "nobody")
	if err != nil {
		return nil, err
	}
	// --no-defaults must come first: no my.cnf of the machine applies.
	data := filepath.Join(s.dir, "data")
	var initCmd *exec.Cmd
	if install != "" {
		initCmd = s.command(cred, install, append([]string{"--no-defaults", "--datadir=" + data,
			"--auth-root-authentication-method=normal", "--skip-test-db"}, mariaDBTuning...)...)
	} else {
		initCmd = s.command(cred, server, append([]string{"--no-defaults", "--datadir=" + data,
			"--initialize-insecure"}, mariaDBTuning...)...)
	}
	if out, err := initCmd.CombinedOutput(); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%s: %v: %s", filepath.Base(initCmd.Path), err, out)
	}
	cmd := s.command(cred, server, append([]string{"--no-defaults", "--datadir=" + data,
		"--port=" + strconv.Itoa(s.port), "--bind-address=127.0.0.1", "--skip-networking=0",
		"--socket=" + s.socket(), "--pid-file=" + filepath.Join(s.dir, "pid"), "--tmpdir=" + s.dir,
		"--max-connections=300"}, mariaDBTuning...)...)
	if err := s.launch(cmd, "mysqld.log", s.mariaDBReady); err != nil {
		return nil, err
	}
	return s, nil
}

// mariaDBReady waits until the server answers on its socket, makes sure
// root may connect from 127.0.0.1 without a password (MariaDB's
// initialization does that already; MySQL's makes only root@localhost), and
// checks that it can.
func (s *Server) mariaDBReady() error {
	err := s.poll(30*time.Second, 50*time.Millisecond, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err := mariaDBExec(ctx, "root@unix("+s.socket()+")/",
			"CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'",
			"GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
		var merr *mysql.MySQLError
		if errors.As(err, &merr) {
			return true, fmt.Errorf("grant root@127.0.0.1: %w", err)
		}
		return false, err
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := sql.Open("mysql", s.mariaDBDSN(""))
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping over tcp: %w", err)
	}
	return nil
}

func (s *Server) newMariaDBDatabase(name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := mariaDBExec(ctx, s.mariaDBDSN(""), "CREATE DATABASE "+name+" CHARACTER SET utf8mb4"); err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	return s.mariaDBDSN(name), nil
}

// mariaDBDSN is the DSN of database db over TCP, as root without a
// password.
func (s *Server) mariaDBDSN(db string) string {
	return fmt.Sprintf("root@tcp(127.0.0.1:%d)/%s?parseTime=true&multiStatements=false", s.port, db)
}

func (s *Server) socket() string { return filepath.Join(s.dir, "sock") }

// mariaDBExec runs statements, each on its own, on a connection of its own.
func mariaDBExec(ctx context.Context, dsn string, stmts ...string) error {
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
