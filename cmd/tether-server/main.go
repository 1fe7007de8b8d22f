// Command tether-server runs the tether sync server on an embedded SQLite
// database or on PostgreSQL.
//
//	tether-server -schema schema.json -tokens tokens.json -db server.db -listen :8080
//	tether-server -schema schema.json -tokens tokens.json -db postgres://tether@db/tether -listen :8443 \
//	    -tls-cert server.crt -tls-key server.key -rate 20
//
// Any number of processes may serve one PostgreSQL database.
//
// The schema file is the JSON of an entity.Schema (json.Marshal of
// Registry.Schema()). The tokens file maps bearer tokens to principals:
//
//	{"token-1": {"tenant": "acme", "user": "ada"}}
//
// Instead of or besides it, the server accepts JWTs signed with HS256
// (-jwt-hs256-secret-file) or RS256 (-jwt-rs256-public-key), with the
// tenant and user taken from -jwt-tenant-claim and -jwt-user-claim.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/mysqlstore"
	"github.com/tethersync/tether/server/pgstore"
	"github.com/tethersync/tether/wire"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "tether-server:", err)
		os.Exit(1)
	}
}

type strategies map[string]server.Strategy

func (s strategies) String() string { return fmt.Sprint(map[string]server.Strategy(s)) }
func (s strategies) Set(v string) error {
	table, strategy, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("want table=strategy, got %q", v)
	}
	s[table] = server.Strategy(strategy)
	return nil
}

// run serves until ctx ends, then shuts down gracefully.
func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("tether-server", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "address to listen on")
	dbPath := fs.String("db", "tether-server.db", "path of the SQLite database, or a postgres:// or mysql:// URL")
	tokensPath := fs.String("tokens", "", "path of the JSON tokens file (required)")
	schemaPath := fs.String("schema", "", "path of the JSON schema file (required)")
	jwtSecret := fs.String("jwt-hs256-secret-file", "", "accept JWTs signed with HS256 with the secret in this file")
	jwtPublic := fs.String("jwt-rs256-public-key", "", "accept JWTs signed with RS256, verified with this PEM public key file")
	jwtIssuer := fs.String("jwt-issuer", "", "required \"iss\" of JWTs")
	jwtAudience := fs.String("jwt-audience", "", "required \"aud\" of JWTs")
	jwtTenant := fs.String("jwt-tenant-claim", "tenant", "claim of JWTs that holds the tenant")
	jwtUser := fs.String("jwt-user-claim", "sub", "claim of JWTs that holds the user")
	tlsCert := fs.String("tls-cert", "", "serve HTTPS with this certificate file (PEM; with -tls-key)")
	tlsKey := fs.String("tls-key", "", "private key file of -tls-cert (PEM)")
	maxBody := fs.Int64("max-body", server.DefaultMaxBodyBytes, "largest request body in bytes, after decompression (413 above)")
	maxRows := fs.Int("max-batch-rows", 10000, "most rows in one pushed batch (413 above; the client halves its batch)")
	maxSessions := fs.Int("max-sessions", 4, "most uncommitted push sessions per device (409 above)")
	idle := fs.Duration("session-idle", 24*time.Hour, "a push session idle this long expires with its staged rows")
	rateLimit := fs.Float64("rate", 0, "requests per second per bearer token (429 with Retry-After above); 0 for no limit")
	rateBurst := fs.Int("rate-burst", 0, "burst of -rate (default twice -rate)")
	maxValue := fs.Int("max-value", server.DefaultMaxValueBytes, "largest column value of a pushed row, in bytes (413 above)")
	maxPage := fs.Int("max-page-bytes", server.DefaultMaxPageBytes, "most bytes of rows in one pull page (at least one row)")
	maxSessionRows := fs.Int("max-session-rows", 100_000, "most rows one push session stages (413 session_full above: the device commits and goes on in a new one)")
	maxSessionBytes := fs.Int64("max-session-bytes", 256<<20, "most bytes one push session stages (413 session_full above)")
	maxTenantStaged := fs.Int64("max-tenant-staged", 2<<30, "most bytes a tenant's open push sessions stage together (429 above)")
	skew := fs.Duration("max-clock-skew", server.DefaultMaxClockSkew, "clock stamps further ahead of the server's clock are re-stamped at commit")
	authFailures := fs.Float64("auth-failures", 1, "failed authentications per second one client address may make (429 above); negative for no limit")
	authBurst := fs.Int("auth-failure-burst", 20, "burst of -auth-failures")
	sweep := fs.Duration("sweep", time.Minute, "how often expired push sessions are discarded")
	bodyTimeout := fs.Duration("body-timeout", 60*time.Second, "longest a request body may take to arrive")
	idleConn := fs.Duration("idle-timeout", 2*time.Minute, "an idle keep-alive connection is closed after this long")
	strat := strategies{}
	fs.Var(strat, "strategy", "conflict strategy of a table, as table=last-writer-wins|server-wins|client-wins|merge-columns (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *schemaPath == "" {
		return errors.New("-schema is required")
	}
	if *tokensPath == "" && *jwtSecret == "" && *jwtPublic == "" {
		return errors.New("give -tokens, a JWT key (-jwt-hs256-secret-file or -jwt-rs256-public-key), or both")
	}
	if *jwtSecret != "" && *jwtPublic != "" {
		return errors.New("-jwt-hs256-secret-file and -jwt-rs256-public-key exclude each other")
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return errors.New("-tls-cert and -tls-key go together")
	}
	if *maxBody <= 0 || *maxRows <= 0 || *maxRows > wire.MaxBatchSize || *maxSessions <= 0 || *idle <= 0 || *rateLimit < 0 || *rateBurst < 0 ||
		*maxValue <= 0 || *maxPage <= 0 || *maxSessionRows <= 0 || *maxSessionBytes <= 0 || *maxTenantStaged <= 0 || *skew <= 0 ||
		*authBurst <= 0 || *sweep <= 0 || *bodyTimeout <= 0 || *idleConn <= 0 {
		return fmt.Errorf("limits and timeouts must be positive, -max-batch-rows at most %d, -rate and -rate-burst not negative", wire.MaxBatchSize)
	}
	schema, err := loadSchema(*schemaPath)
	if err != nil {
		return err
	}
	var auth server.Authenticators
	if *tokensPath != "" {
		tokens, err := loadTokens(*tokensPath)
		if err != nil {
			return err
		}
		auth = append(auth, tokens)
	}
	if *jwtSecret != "" || *jwtPublic != "" {
		j := &server.JWT{Issuer: *jwtIssuer, Audience: *jwtAudience, TenantClaim: *jwtTenant, UserClaim: *jwtUser}
		if *jwtSecret != "" {
			secret, err := os.ReadFile(*jwtSecret)
			if err != nil {
				return fmt.Errorf("jwt secret: %w", err)
			}
			if j.Secret = bytes.TrimSpace(secret); len(j.Secret) < 32 {
				return fmt.Errorf("jwt secret %s: want at least 32 bytes", *jwtSecret)
			}
		} else {
			data, err := os.ReadFile(*jwtPublic)
			if err != nil {
				return fmt.Errorf("jwt public key: %w", err)
			}
			if j.PublicKey, err = jwt.ParseRSAPublicKeyFromPEM(data); err != nil {
				return fmt.Errorf("jwt public key %s: %w", *jwtPublic, err)
			}
		}
		auth = append(auth, j)
	}
	opts := server.Options{
		Auth:         auth,
		Strategies:   strat,
		MaxBodyBytes: *maxBody,
		MaxBatchRows: *maxRows,
		Limits: server.Limits{MaxOpenSessions: *maxSessions, SessionIdle: *idle, MaxSessionRows: *maxSessionRows,
			MaxSessionBytes: *maxSessionBytes, MaxTenantStagedBytes: *maxTenantStaged},
		RateLimit:        rate.Limit(*rateLimit),
		RateBurst:        *rateBurst,
		MaxValueBytes:    *maxValue,
		MaxPageBytes:     *maxPage,
		MaxClockSkew:     *skew,
		AuthFailures:     rate.Limit(*authFailures),
		AuthFailureBurst: *authBurst,
		SweepInterval:    *sweep,
		BodyTimeout:      *bodyTimeout,
	}
	if err := opts.Check(schema); err != nil { // before a database is touched
		return fmt.Errorf("-strategy: %w", err)
	}
	store, err := openStore(ctx, *dbPath, schema)
	if err != nil {
		return err
	}
	defer store.Close()
	handler, err := server.New(store, opts)
	if err != nil {
		return err
	}
	defer handler.Close()
	srv := &http.Server{
		Addr:              *listen,
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       *idleConn, // a keep-alive connection needs no token: it must not be held forever
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	if *tlsCert != "" {
		go func() { errc <- srv.ServeTLS(ln, *tlsCert, *tlsKey) }()
	} else {
		go func() { errc <- srv.Serve(ln) }()
	}
	slog.Info("tether-server listening", "addr", ln.Addr().String(), "tls", *tlsCert != "", "store", storeKind(*dbPath), "tables", len(schema.Tables))
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}

func isPostgres(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}

func isMySQL(db string) bool { return strings.HasPrefix(db, "mysql://") }

func storeKind(db string) string {
	switch { // a URL may hold a password: not logged
	case isPostgres(db):
		return "postgres"
	case isMySQL(db):
		return "mysql"
	}
	return "sqlite " + db
}

// openStore opens the PostgreSQL store for a postgres:// URL, the MySQL
// store for a mysql:// URL, else the SQLite store at the path db.
func openStore(ctx context.Context, db string, schema entity.Schema) (server.Store, error) {
	switch {
	case isPostgres(db):
		return pgstore.Open(ctx, db, schema, pgstore.Options{})
	case isMySQL(db):
		return mysqlstore.Open(ctx, db, schema, mysqlstore.Options{})
	}
	return openSQLite(db, schema)
}

func loadSchema(path string) (entity.Schema, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return entity.Schema{}, fmt.Errorf("schema: %w", err)
	}
	return entity.ParseSchema(data)
}

func loadTokens(path string) (server.StaticTokens, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	var tokens server.StaticTokens
	if err := json.Unmarshal(data, &tokens); err != nil {
		return nil, fmt.Errorf("tokens %s: %w", path, err)
	}
	for tok, p := range tokens {
		if tok == "" || p.Tenant == "" || p.User == "" {
			return nil, fmt.Errorf("tokens %s: every token needs a tenant and a user", path)
		}
	}
	return tokens, nil
}
