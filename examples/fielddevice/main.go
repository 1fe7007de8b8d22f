package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/localdb"
)

// Reading is one sensor reading. Seq counts the device's readings from 1,
// without gaps, so that the server side can tell that none is missing.
type Reading struct {
	entity.Meta `sync:"readings,1"`
	ID          string    `db:"id"`
	Device      string    `db:"device"`
	Seq         int64     `db:"seq"`
	Value       float64   `db:"value"`
	TakenAt     time.Time `db:"taken_at"`
}

// Registry returns the registry of the agent's entities.
func Registry() (*entity.Registry, error) {
	reg := entity.NewRegistry()
	if err := reg.Register(Reading{}); err != nil {
		return nil, fmt.Errorf("register entities: %w", err)
	}
	return reg, nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(ctx, os.Args[1:], log); err != nil {
		if errors.Is(err, errRevoked) {
			os.Exit(exitRevoked) // logged, and the database wiped
		}
		log.Error("fielddevice failed", "err", err.Error())
		os.Exit(1)
	}
}

// config is the agent's configuration.
type config struct {
	server, token, tokenFile, db, name, status string
	interval, sample, shutdown, retryFor       time.Duration
	live                                       bool
	pushBatch                                  int
	level                                      slog.Level
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) (time.Duration, error) {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("$%s: %w", name, err)
	}
	return d, nil
}

// parse reads the flags; each defaults to an environment variable.
func parse(args []string) (config, error) {
	var c config
	host, _ := os.Hostname()
	var errs []error
	dur := func(name string, def time.Duration) time.Duration {
		d, err := envDuration(name, def)
		errs = append(errs, err)
		return d
	}
	fs := flag.NewFlagSet("fielddevice", flag.ContinueOnError)
	fs.StringVar(&c.server, "server", env("TETHER_SERVER", ""), "sync server URL ($TETHER_SERVER; required)")
	fs.StringVar(&c.token, "token", env("TETHER_TOKEN", ""), "bearer token ($TETHER_TOKEN)")
	fs.StringVar(&c.tokenFile, "token-file", env("TETHER_TOKEN_FILE", ""), "file holding the bearer token, read again when the server refuses it ($TETHER_TOKEN_FILE)")
	fs.StringVar(&c.db, "db", env("TETHER_DB", "fielddevice.db"), "the device's SQLite file ($TETHER_DB)")
	fs.StringVar(&c.name, "name", env("TETHER_DEVICE_NAME", host), "device name recorded in each reading ($TETHER_DEVICE_NAME)")
	fs.StringVar(&c.status, "status", env("TETHER_STATUS_ADDR", "127.0.0.1:9464"), "loopback address of the status endpoint; empty for none ($TETHER_STATUS_ADDR)")
	fs.DurationVar(&c.interval, "interval", dur("TETHER_SYNC_INTERVAL", 5*time.Minute), "sync interval ($TETHER_SYNC_INTERVAL)")
	fs.DurationVar(&c.sample, "sample", dur("TETHER_SAMPLE_INTERVAL", 10*time.Second), "reading interval; 0 records nothing ($TETHER_SAMPLE_INTERVAL)")
	fs.DurationVar(&c.retryFor, "retry-for", dur("TETHER_RETRY_FOR", 2*time.Minute), "how long one sync retries transient failures before the round counts as failed ($TETHER_RETRY_FOR)")
	fs.DurationVar(&c.shutdown, "shutdown-timeout", dur("TETHER_SHUTDOWN_TIMEOUT", 60*time.Second), "longest wait for a sync's safe point on SIGTERM ($TETHER_SHUTDOWN_TIMEOUT)")
	live, err := strconv.ParseBool(env("TETHER_LIVE", "false"))
	errs = append(errs, err)
	fs.BoolVar(&c.live, "live", live, "also sync soon after other devices' changes ($TETHER_LIVE)")
	batch, err := strconv.Atoi(env("TETHER_PUSH_BATCH", "1000"))
	errs = append(errs, err)
	fs.IntVar(&c.pushBatch, "push-batch", batch, "rows per push batch ($TETHER_PUSH_BATCH)")
	level := env("TETHER_LOG_LEVEL", "info")
	fs.StringVar(&level, "log-level", level, "debug, info, warn or error ($TETHER_LOG_LEVEL)")
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("environment: %w", err)
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if err := c.level.UnmarshalText([]byte(level)); err != nil {
		return c, fmt.Errorf("-log-level: %w", err)
	}
	switch {
	case c.server == "":
		return c, errors.New("-server or $TETHER_SERVER is required")
	case c.token == "" && c.tokenFile == "":
		return c, errors.New("give -token ($TETHER_TOKEN) or -token-file ($TETHER_TOKEN_FILE)")
	case c.interval <= 0 || c.retryFor <= 0:
		return c, errors.New("-interval and -retry-for must be positive")
	case c.sample < 0:
		return c, errors.New("-sample must not be negative")
	}
	if c.status != "" {
		host, _, err := net.SplitHostPort(c.status)
		if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			return c, fmt.Errorf("-status %q: want a loopback address such as 127.0.0.1:9464", c.status)
		}
	}
	return c, nil
}

// Status is the body of GET /status.
type Status struct {
	Device      string    `json:"device"`
	Recorded    int64     `json:"recorded"` // readings taken, this run and before
	Pending     int       `json:"pending"`  // rows not yet on the server
	Syncing     bool      `json:"syncing"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Failures    int       `json:"failures"` // failed syncs since the last success
	// Retry says, while a sync waits to try again, why and when:
	// "retrying in 8s (attempt 4): …".
	Retry string `json:"retry,omitempty"`
}

// agent is the running agent's state.
type agent struct {
	cfg config
	log *slog.Logger
	db  *localdb.DB
	co  *coordinator.Coordinator

	mu      sync.Mutex
	seq     int64
	success time.Time
	lastErr string
	errAt   time.Time
	fails   int
	retry   string // while a sync waits to try again; see Status.Retry
}

func run(ctx context.Context, args []string, log *slog.Logger) error {
	cfg, err := parse(args)
	if err != nil {
		return err
	}
	log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.level}))
	reg, err := Registry()
	if err != nil {
		return err
	}
	db, err := localdb.Open(ctx, cfg.db, reg)
	if err != nil {
		return fmt.Errorf("open %s: %w", cfg.db, err)
	}
	defer db.Close()
	ctx, stopRun := context.WithCancelCause(ctx) // ended by a signal, or the revocation
	defer stopRun(nil)
	a := &agent{cfg: cfg, log: log, db: db}
	if err := db.SQL().QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM readings WHERE device = ?`, cfg.name).Scan(&a.seq); err != nil {
		return fmt.Errorf("last reading: %w", err)
	}
	opts := client.Options{Token: cfg.token, UserAgent: "tether-fielddevice/1"}
	if cfg.tokenFile != "" {
		opts.TokenSource = client.TokenFunc(func(context.Context) (string, error) {
			b, err := os.ReadFile(cfg.tokenFile)
			if err != nil {
				return "", fmt.Errorf("read token: %w", err)
			}
			return strings.TrimSpace(string(b)), nil
		})
	}
	a.co = coordinator.New(db, client.New(cfg.server, opts), coordinator.Options{
		PushBatchSize: cfg.pushBatch,
		MaxElapsed:    cfg.retryFor,
		Logger:        log,
		OnSync:        a.onSync,
		OnProgress:    a.onProgress,
		OnConflict: func(c coordinator.Conflict) {
			log.Warn("conflict", "table", c.Table, "id", c.ID, "strategy", c.Strategy, "local_won", c.LocalWon)
		},
	})
	pending, _ := db.Pending(ctx)
	log.Info("fielddevice starting", "device", cfg.name, "server", cfg.server, "db", cfg.db, "readings", a.seq,
		"pending", pending, "interval", cfg.interval.String(), "sample", cfg.sample.String(), "live", cfg.live)

	var stopStatus func()
	if cfg.status != "" {
		if stopStatus, err = a.serveStatus(cfg.status); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	if cfg.sample > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.record(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		var err error
		if cfg.live {
			err = a.co.Live(ctx, cfg.interval)
		} else {
			err = a.co.Run(ctx, cfg.interval)
		}
		if errors.Is(err, coordinator.ErrRevoked) {
			stopRun(err)
		}
	}()

	<-ctx.Done()
	if revoked := context.Cause(ctx); errors.Is(revoked, coordinator.ErrRevoked) {
		wg.Wait()
		return a.wipe(revoked, stopStatus)
	}
	log.Info("fielddevice shutting down", "sync", "stops at its next safe point", "timeout", cfg.shutdown.String())
	wg.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.shutdown)
	defer cancel()
	if err := a.co.Shutdown(sctx); err != nil {
		log.Warn("sync stopped at once: no safe point in time", "timeout", cfg.shutdown.String())
	}
	if stopStatus != nil {
		stopStatus()
	}
	pending, _ = db.Pending(context.Background())
	log.Info("fielddevice stopped", "readings", a.recorded(), "pending", pending)
	return nil
}

// record takes a reading every sample interval until ctx ends.
func (a *agent) record(ctx context.Context) {
	t := time.NewTicker(a.cfg.sample)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			a.mu.Lock()
			seq := a.seq + 1
			a.mu.Unlock()
			r := Reading{Device: a.cfg.name, Seq: seq, Value: sensor(now), TakenAt: now.UTC()}
			// Not ctx: a reading taken is written whole even during shutdown.
			if err := a.db.Save(context.Background(), &r); err != nil {
				a.log.Error("recording failed", "seq", seq, "err", err.Error())
				continue
			}
			a.mu.Lock()
			a.seq = seq
			a.mu.Unlock()
			a.log.Debug("recorded", "seq", seq, "value", r.Value)
		}
	}
}

// sensor stands for the device's sensor: a slow wave.
func sensor(t time.Time) float64 {
	return math.Round(200+100*math.Sin(float64(t.UnixMilli())/60000)) / 10
}

func (a *agent) recorded() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seq
}

// onSync records how each sync ended, and logs it.
func (a *agent) onSync(rep coordinator.Report, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.retry = ""
	if err == nil {
		a.success, a.fails = time.Now().UTC(), 0
		a.log.Info("synced", "pushed", rep.Pushed["readings"], "pulled", rep.Applied, "conflicts", rep.Conflicts,
			"bytes_sent", rep.BytesSent, "attempts", rep.Attempts, "ms", rep.Duration.Milliseconds())
		return
	}
	a.lastErr, a.errAt = err.Error(), time.Now().UTC()
	a.fails++
	switch {
	case errors.Is(err, context.Canceled):
		a.log.Info("sync stopped at a safe point", "pushed", rep.Pushed["readings"])
	case errors.Is(err, coordinator.ErrOffline):
		a.log.Warn("sync: server unreachable", "err", err.Error(), "failures", a.fails)
	default:
		a.log.Error("sync failed", "err", err.Error(), "failures", a.fails)
	}
}

// onProgress keeps what a retrying sync waits for, for the status, and
// logs it.
func (a *agent) onProgress(p coordinator.Progress) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.retry = ""
	if p.Phase == coordinator.PhaseRetry {
		a.retry = p.String()
		a.log.Info("sync retrying", "attempt", p.Attempt, "wait", p.Wait.String(), "err", p.Err.Error())
	}
}

// status returns the agent's status.
func (a *agent) status(ctx context.Context) (Status, error) {
	pending, err := a.db.Pending(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("status: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return Status{Device: a.cfg.name, Recorded: a.seq, Pending: pending, Syncing: a.co.Syncing(),
		LastSuccess: a.success, LastError: a.lastErr, LastErrorAt: a.errAt, Failures: a.fails, Retry: a.retry}, nil
}

// serveStatus serves GET /status on addr; the returned func stops it.
func (a *agent) serveStatus(addr string) (func(), error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		st, err := a.status(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("status endpoint: %w", err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln)
	a.log.Info("status endpoint listening", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(ctx)
	}, nil
}
