// Command tether-server runs the tether sync server on an embedded SQLite
// database, on PostgreSQL or on MySQL.
//
//	tether-server -schema schema.json -tokens tokens.json -db server.db -listen :8080
//	tether-server -schema schema.json -tokens tokens.json -db postgres://tether@db/tether -listen :8443 \
//	    -tls-cert server.crt -tls-key server.key -rate 20
//
// Any number of processes may serve one PostgreSQL or MySQL database.
//
// The schema file is the JSON of an entity.Schema (json.Marshal of
// Registry.Schema()). The tokens file maps bearer tokens to principals:
//
//	{"token-1": {"tenant": "acme", "user": "ada"}}
//
// Instead of or besides it, the server accepts JWTs signed with HS256
// (-jwt-hs256-secret-file), RS256 (-jwt-rs256-public-key) or a key of an
// identity provider's key set (-jwt-jwks-url), with the tenant and user
// taken from -jwt-tenant-claim and -jwt-user-claim.
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

// Timeouts of the HTTP server that are the command's, not server.Options'.
const (
	defaultIdleTimeout = 2 * time.Minute  // -idle-timeout
	readHeaderTimeout  = 10 * time.Second // a request's headers must arrive within it
	shutdownTimeout    = 10 * time.Second // requests under way get this long to finish
)

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

// deletes is -delete: how a delete settles against an update, per table
// (server.Options.Deletes).
type deletes map[string]server.DeletePolicy

func (d deletes) String() string { return fmt.Sprint(map[string]server.DeletePolicy(d)) }
func (d deletes) Set(v string) error {
	table, policy, ok := strings.Cut(v, "=")
	if p := server.DeletePolicy(policy); !ok || table == "" || (p != server.NewerWins && p != server.DeleteAlwaysWins) {
		return fmt.Errorf("want table=%s|%s, got %q", server.NewerWins, server.DeleteAlwaysWins, v)
	}
	d[table] = server.DeletePolicy(policy)
	return nil
}

// trustedUsers are the users of -trusted-user: principals of these users
// may write through POST /v1/write (server.Options.Trusted).
type trustedUsers map[string]bool

func (t trustedUsers) String() string { return fmt.Sprint(map[string]bool(t)) }
func (t trustedUsers) Set(v string) error {
	if v == "" {
		return errors.New("want a user name")
	}
	t[v] = true
	return nil
}

// config is what the command line asks for.
type config struct {
	listen, db, tokens, schema                 string
	jwtSecret, jwtPublic                       string
	jwtIssuer, jwtAudience, jwtTenant, jwtUser string
	jwtJWKS                                    string
	jwtJWKSRefresh                             time.Duration
	tlsCert, tlsKey                            string
	idleTimeout                                time.Duration
	opts                                       server.Options // without Auth, which loadAuth makes
	metrics                                    metricsConfig
}

// parseFlags reads the command line into a config, and checks what can be
// checked without reading a file.
func parseFlags(args []string) (config, error) {
	var c config
	o, lim := &c.opts, &c.opts.Limits
	strat := strategies{}
	o.Strategies = strat
	trusted := trustedUsers{}
	dels := deletes{}
	o.Deletes = dels
	fs := flag.NewFlagSet("tether-server", flag.ContinueOnError)
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8080", "address to listen on")
	fs.StringVar(&c.db, "db", "tether-server.db", "path of the SQLite database, or a postgres:// or mysql:// URL")
	fs.StringVar(&c.tokens, "tokens", "", "path of the JSON tokens file (required)")
	fs.StringVar(&c.schema, "schema", "", "path of the JSON schema file (required)")
	fs.StringVar(&c.jwtSecret, "jwt-hs256-secret-file", "", "accept JWTs signed with HS256 with the secret in this file")
	fs.StringVar(&c.jwtPublic, "jwt-rs256-public-key", "", "accept JWTs signed with RS256, verified with this PEM public key file")
	fs.StringVar(&c.jwtJWKS, "jwt-jwks-url", "", "accept JWTs signed with a key of the JWKS at this https URL (an identity provider's jwks_uri); it must load at start")
	fs.DurationVar(&c.jwtJWKSRefresh, "jwt-jwks-refresh", server.DefaultJWKSRefresh, "how often -jwt-jwks-url is fetched again (an unknown kid fetches it at once, at most once a minute)")
	fs.StringVar(&c.jwtIssuer, "jwt-issuer", "", "required \"iss\" of JWTs")
	fs.StringVar(&c.jwtAudience, "jwt-audience", "", "required \"aud\" of JWTs")
	fs.StringVar(&c.jwtTenant, "jwt-tenant-claim", server.DefaultTenantClaim, "claim of JWTs that holds the tenant")
	fs.StringVar(&c.jwtUser, "jwt-user-claim", server.DefaultUserClaim, "claim of JWTs that holds the user")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "serve HTTPS with this certificate file (PEM; with -tls-key)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "private key file of -tls-cert (PEM)")
	fs.Int64Var(&o.MaxBodyBytes, "max-body", server.DefaultMaxBodyBytes, "largest request body in bytes, after decompression (413 above)")
	fs.IntVar(&o.MaxBatchRows, "max-batch-rows", server.DefaultMaxBatchRows, "most rows in one pushed batch (413 above; the client halves its batch)")
	fs.IntVar(&lim.MaxOpenSessions, "max-sessions", server.DefaultMaxOpenSessions, "most uncommitted push sessions per device (409 above)")
	fs.DurationVar(&lim.SessionIdle, "session-idle", server.DefaultSessionIdle, "a push session idle this long expires with its staged rows")
	fs.Float64Var((*float64)(&o.RateLimit), "rate", 0, "requests per second per bearer token (429 with Retry-After above); 0 for no limit")
	fs.IntVar(&o.RateBurst, "rate-burst", 0, "burst of -rate (default twice -rate)")
	fs.IntVar(&o.MaxValueBytes, "max-value", server.DefaultMaxValueBytes, "largest column value of a pushed row, in bytes (413 above)")
	fs.IntVar(&o.MaxPageBytes, "max-page-bytes", server.DefaultMaxPageBytes, "most bytes of rows in one pull page (at least one row)")
	fs.Int64Var(&o.MaxCost, "max-cost", server.DefaultMaxCost, "units of expensive work served at once: a digest costs one per column, a snapshot page one per 100 rows of its limit (429 with Retry-After above)")
	fs.DurationVar(&o.CostWait, "cost-wait", server.DefaultCostWait, "how long an expensive request waits for -max-cost before it gets 429")
	fs.IntVar(&lim.MaxSessionRows, "max-session-rows", server.DefaultMaxSessionRows, "most rows one push session stages (413 session_full above: the device commits and goes on in a new one)")
	fs.Int64Var(&lim.MaxSessionBytes, "max-session-bytes", server.DefaultMaxSessionBytes, "most bytes one push session stages (413 session_full above)")
	fs.Int64Var(&lim.MaxTenantStagedBytes, "max-tenant-staged", server.DefaultMaxTenantStagedBytes, "most bytes a tenant's open push sessions stage together (429 above)")
	fs.DurationVar(&lim.DeviceActivity, "device-activity", server.DefaultDeviceActivity, "a device unseen this long no longer holds back the purge of tombstones (it rebuilds when it comes back)")
	fs.DurationVar(&lim.SessionRetention, "session-retention", server.DefaultSessionRetention, "committed push sessions and their answers are kept this long")
	fs.DurationVar(&lim.AuditRetention, "audit-retention", server.DefaultAuditRetention, "audit log entries are kept this long")
	fs.IntVar(&lim.MaxUserDevices, "max-user-devices", server.DefaultMaxUserDevices, "devices one user may have seen in a tenant within -device-activity; past it, registrations get 409 device_limit")
	fs.DurationVar(&lim.DeviceRetention, "device-retention", server.DefaultDeviceRetention, "the registration of a device unseen this long is forgotten (it registers again when it comes back); at least -device-activity")
	fs.DurationVar(&o.MaxClockSkew, "max-clock-skew", server.DefaultMaxClockSkew, "clock stamps further ahead of the server's clock are re-stamped at commit")
	fs.Float64Var((*float64)(&o.AuthFailures), "auth-failures", server.DefaultAuthFailures, "failed authentications per second one client address may make (429 above); negative for no limit")
	fs.IntVar(&o.AuthFailureBurst, "auth-failure-burst", server.DefaultAuthFailureBurst, "burst of -auth-failures")
	fs.IntVar(&o.MaxStreams, "max-streams", server.DefaultMaxStreams, "most event streams one user of a tenant may hold open (429 above)")
	fs.DurationVar(&o.SweepInterval, "sweep", server.DefaultSweepInterval, "how often expired push sessions, and what is past its retention, are discarded")
	fs.BoolVar(&o.CaptureExternalWrites, "capture-external", false, "install triggers that bring rows written with plain SQL in the synced tables to devices (off: drop them)")
	fs.DurationVar(&o.CaptureInterval, "capture-interval", server.DefaultCaptureInterval, "how often rows written with plain SQL are committed, besides at every commit of their tenant (with -capture-external)")
	fs.DurationVar(&o.BodyTimeout, "body-timeout", server.DefaultBodyTimeout, "longest a request body may take to arrive")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", defaultIdleTimeout, "an idle keep-alive connection is closed after this long")
	fs.Var(strat, "strategy", "conflict strategy of a table, as table=last-writer-wins|server-wins|client-wins|merge-columns (repeatable)")
	fs.Var(dels, "delete", "how a delete settles against a concurrent update of a table, as table=newer-wins|delete-wins (repeatable; default newer-wins)")
	c.metrics.flags(fs)
	fs.Var(trusted, "trusted-user", "a user, of any tenant, whose principals may write through POST /v1/write (a back office; repeatable)")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if len(trusted) > 0 {
		o.Trusted = func(p server.Principal) bool { return trusted[p.User] }
	}
	return c, c.check()
}

// check returns an error for a missing or contradictory flag, or a limit
// out of range.
func (c config) check() error {
	o, lim := c.opts, c.opts.Limits
	switch {
	case c.schema == "":
		return errors.New("-schema is required")
	case c.tokens == "" && c.jwtSecret == "" && c.jwtPublic == "" && c.jwtJWKS == "":
		return errors.New("give -tokens, a JWT key (-jwt-hs256-secret-file, -jwt-rs256-public-key or -jwt-jwks-url), or both")
	case c.jwtSecret != "" && (c.jwtPublic != "" || c.jwtJWKS != "") || c.jwtPublic != "" && c.jwtJWKS != "":
		return errors.New("-jwt-hs256-secret-file, -jwt-rs256-public-key and -jwt-jwks-url exclude each other")
	case c.jwtJWKSRefresh <= 0:
		return errors.New("-jwt-jwks-refresh must be positive")
	case (c.tlsCert == "") != (c.tlsKey == ""):
		return errors.New("-tls-cert and -tls-key go together")
	}
	if o.MaxBodyBytes <= 0 || o.MaxBatchRows <= 0 || o.MaxBatchRows > wire.MaxBatchSize || lim.MaxOpenSessions <= 0 || lim.SessionIdle <= 0 ||
		o.RateLimit < 0 || o.RateBurst < 0 || o.MaxValueBytes <= 0 || o.MaxPageBytes <= 0 || lim.MaxSessionRows <= 0 ||
		lim.MaxSessionBytes <= 0 || lim.MaxTenantStagedBytes <= 0 || lim.DeviceActivity <= 0 || lim.SessionRetention <= 0 ||
		lim.AuditRetention <= 0 || lim.MaxUserDevices <= 0 || lim.DeviceRetention <= 0 || o.MaxStreams <= 0 || o.MaxClockSkew <= 0 || o.AuthFailureBurst <= 0 || o.SweepInterval <= 0 || o.BodyTimeout <= 0 ||
		c.idleTimeout <= 0 {
		return fmt.Errorf("limits and timeouts must be positive, -max-batch-rows at most %d, -rate and -rate-burst not negative", wire.MaxBatchSize)
	}
	if o.MaxCost <= 0 || o.CostWait <= 0 {
		return errors.New("-max-cost and -cost-wait must be positive")
	}
	return nil
}

// run serves until ctx ends, then shuts down gracefully.
func run(ctx context.Context, args []string) error {
	c, err := parseFlags(args)
	if err != nil {
		return err
	}
	schema, err := loadSchema(c.schema)
	if err != nil {
		return err
	}
	auth, err := c.loadAuth(ctx)
	if err != nil {
		return err
	}
	defer auth.Close() // stops fetching -jwt-jwks-url
	c.opts.Auth = auth
	if err := c.opts.Check(schema); err != nil { // before a database is touched
		return fmt.Errorf("-strategy, -delete: %w", err)
	}
	store, err := openStore(ctx, c.db, schema)
	if err != nil {
		return err
	}
	defer store.Close()
	stopMetrics, err := c.metrics.start(ctx, &c.opts)
	if err != nil {
		return err
	}
	defer stopMetrics()
	handler, err := server.New(store, c.opts)
	if err != nil {
		return err
	}
	defer handler.Close()
	return c.serve(ctx, handler, "store", storeKind(c.db), "tables", len(schema.Tables))
}

// serve serves handler on the configured address until ctx ends, and then
// shuts the HTTP server down, giving requests under way shutdownTimeout.
// It logs that it listens, with attrs.
func (c config) serve(ctx context.Context, handler http.Handler, attrs ...any) error {
	srv := &http.Server{
		Addr:              c.listen,
		Handler:           handler,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       c.idleTimeout, // a keep-alive connection needs no token: it must not be held forever
	}
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	if c.tlsCert != "" {
		go func() { errc <- srv.ServeTLS(ln, c.tlsCert, c.tlsKey) }()
	} else {
		go func() { errc <- srv.Serve(ln) }()
	}
	slog.Info("tether-server listening", append([]any{"addr", ln.Addr().String(), "tls", c.tlsCert != ""}, attrs...)...)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	return srv.Shutdown(shutdown)
}

// loadAuth reads the tokens file and the JWT key the flags name; a JWKS
// is fetched until ctx ends or the authenticators are closed.
func (c config) loadAuth(ctx context.Context) (server.Authenticators, error) {
	var auth server.Authenticators
	if c.tokens != "" {
		tokens, err := loadTokens(c.tokens)
		if err != nil {
			return nil, err
		}
		auth = append(auth, tokens)
	}
	if c.jwtSecret == "" && c.jwtPublic == "" && c.jwtJWKS == "" {
		return auth, nil
	}
	j := &server.JWT{Issuer: c.jwtIssuer, Audience: c.jwtAudience, TenantClaim: c.jwtTenant, UserClaim: c.jwtUser}
	if c.jwtJWKS != "" {
		var err error
		if j.JWKS, err = server.NewJWKS(ctx, c.jwtJWKS, server.JWKSOptions{Refresh: c.jwtJWKSRefresh}); err != nil {
			return nil, fmt.Errorf("-jwt-jwks-url: %w", err)
		}
	} else if c.jwtSecret != "" {
		secret, err := os.ReadFile(c.jwtSecret)
		if err != nil {
			return nil, fmt.Errorf("jwt secret: %w", err)
		}
		if j.Secret = bytes.TrimSpace(secret); len(j.Secret) < 32 {
			return nil, fmt.Errorf("jwt secret %s: want at least 32 bytes", c.jwtSecret)
		}
	} else {
		data, err := os.ReadFile(c.jwtPublic)
		if err != nil {
			return nil, fmt.Errorf("jwt public key: %w", err)
		}
		if j.PublicKey, err = jwt.ParseRSAPublicKeyFromPEM(data); err != nil {
			return nil, fmt.Errorf("jwt public key %s: %w", c.jwtPublic, err)
		}
	}
	return append(auth, j), nil
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
