package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tethersync/tether/internal/throwaway"
)

// RequireEnv is the environment variable that turns a skip into a failure.
const RequireEnv = "TETHER_REQUIRE_POSTGRES"

var shared = &throwaway.Shared[*Cluster]{Name: "PostgreSQL", RequireEnv: RequireEnv, NoBinaries: ErrNoBinaries, Start: Start}

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	dir  string
	port int
	cmd  *exec.Cmd
	done chan error

	mu  sync.Mutex
	dbs int
}

// Main runs the tests of a package and stops the server afterwards. Call it
// from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int { return throwaway.Main(m, Stop) }

// URL returns the URL of a new, empty database on the test server,
// starting the server on first use. It skips t (or fails it, under
// TETHER_REQUIRE_POSTGRES=1) when PostgreSQL is not installed.
func URL(t testing.TB) string {
	t.Helper()
	return shared.Database(t)
}

// NewDatabase creates an empty database and returns its URL.
func (c *Cluster) NewDatabase() (string, error) {
	c.mu.Lock()
	c.dbs++
	name := fmt.Sprintf("db_%d_%d", os.Getpid(), c.dbs)
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.url("postgres"))
	if err != nil {
		return "", fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	return c.url(name), nil
}

// Stop stops the server URL started, if any, and removes its directory.
func Stop() { shared.Stop() }

func (c *Cluster) url(db string) string {
	return fmt.Sprintf("postgres://tether@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// ErrNoBinaries means PostgreSQL is not installed where Start looks.
var ErrNoBinaries = errors.New("no PostgreSQL binaries (initdb, postgres) on PATH or under /usr/lib/postgresql/*/bin")

// binDir finds the directory of initdb and postgres.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("postgres"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if throwaway.IsFile(filepath.Join(d, "initdb")) && throwaway.IsFile(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", ErrNoBinaries
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// credential returns the user to run the server as: the current one, or
// when that is root (which the server refuses) postgres or nobody.
func credential() (*syscall.Credential, error) {
	return throwaway.Credential("PostgreSQL", "postgres", "nobody")
}

// Start initializes a database cluster in a new temporary directory and
// starts a server for it on a free loopback port, as the current user, or
// as the postgres (else nobody) user when running as root. Stop it with
// Stop, which also removes the directory.
func Start() (*Cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tether-pg-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	command := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
		return cmd
	}
	data := filepath.Join(dir, "data")
	out, err := command("initdb", "-D", data, "-U", "tether", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	if c.port, err = throwaway.FreePort(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c.cmd = command("postgres", "-D", data, "-p", strconv.Itoa(c.port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=300")
	logFile, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	if err := c.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	c.done = make(chan error, 1)
	go func() { c.done <- c.cmd.Wait(); logFile.Close() }()
	if err := c.waitReady(30 * time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
		c.Stop()
		return nil, fmt.Errorf("%w; server log:\n%s", err, log)
	}
	return c, nil
}

func (c *Cluster) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, c.url("postgres"))
		if err == nil {
			conn.Close(ctx)
			cancel()
			return nil
		}
		cancel()
		select {
		case werr := <-c.done:
			c.done <- werr
			return fmt.Errorf("postgres exited: %v", werr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres not ready after %v: %w", limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops the server and removes its directory.
func (c *Cluster) Stop() {
	if c.cmd != nil && c.cmd.Process != nil {
		c.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-c.done:
		case <-time.After(20 * time.Second):
			c.cmd.Process.Kill()
			<-c.done
		}
	}
	os.RemoveAll(c.dir)
}
