package dbserver

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// postgresBinDir finds the directory of initdb and postgres.
func postgresBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("postgres"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(binDir string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
		return v
	}
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if isFile(filepath.Join(d, "initdb")) && isFile(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w: no PostgreSQL binaries (initdb, postgres) on PATH or under /usr/lib/postgresql/*/bin", ErrNoBinaries)
}

// startPostgres initializes a cluster and starts its server; user tether,
// trusted on loopback.
func startPostgres() (*Server, error) {
	bin, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	s, cred, err := newServer(Postgres, "postgres", "nobody")
	if err != nil {
		return nil, err
	}
	data := filepath.Join(s.dir, "data")
	out, err := s.command(cred, filepath.Join(bin, "initdb"), "-D", data, "-U", "tether", "--auth=trust",
		"-E", "UTF8", "--no-locale", "--no-sync").CombinedOutput()
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	cmd := s.command(cred, filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(s.port), "-k", s.dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=300")
	if err := s.launch(cmd, "postgres.log", s.postgresReady); err != nil {
		return nil, err
	}
	return s, nil
}

// postgresReady waits until the server accepts a connection.
func (s *Server) postgresReady() error {
	return s.poll(30*time.Second, 100*time.Millisecond, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, s.postgresURL("postgres"))
		if err != nil {
			return false, err
		}
		conn.Close(ctx)
		return false, nil
	})
}

func (s *Server) newPostgresDatabase(name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.postgresURL("postgres"))
	if err != nil {
		return "", fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	return s.postgresURL(name), nil
}

func (s *Server) postgresURL(db string) string {
	return fmt.Sprintf("postgres://tether@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}
