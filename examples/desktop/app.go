package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/wire"
)

// Contact is the app's one synced entity.
type Contact struct {
	entity.Meta `sync:"contacts,1"`
	ID          string `db:"id"`
	Name        string `db:"name"`
	Phone       string `db:"phone"`
}

// Registry returns the registry of the app's entities.
func Registry() (*entity.Registry, error) {
	reg := entity.NewRegistry()
	if err := reg.Register(Contact{}); err != nil {
		return nil, fmt.Errorf("register entities: %w", err)
	}
	return reg, nil
}

//go:embed ui
var uiFiles embed.FS

// Config configures an App.
type Config struct {
	// Name is shown in the page title, such as "laptop".
	Name string
	// DBPath is the device's SQLite file.
	DBPath string
	// Server is the sync server's base URL.
	Server string
	// Token is the bearer token of the user.
	Token string
	// AutoSync, when positive, syncs in the background at this interval
	// and soon after other devices' changes (coordinator.Live). 0 syncs
	// only on "Sync now".
	AutoSync time.Duration
	// Probe is the interval of the online check. Default 3s.
	Probe time.Duration
	// Logger receives the app's log. Default slog.Default().
	Logger *slog.Logger
	// Transport carries the app's requests to the server (proxies, custom
	// TLS; fault injection in tests). Default net/http's.
	Transport http.RoundTripper
	// PushBatchSize is the number of rows per push batch. Default 1,000.
	PushBatchSize int
}

// App is one instance of the desktop app: a device database, its sync
// coordinator, and the web UI that shows them.
type App struct {
	cfg Config
	db  *localdb.DB
	api *client.Client
	co  *coordinator.Coordinator

	ctx    context.Context // background work; Close cancels it
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	online   bool
	checked  bool // online was checked at least once
	progress coordinator.Progress
	lastSync time.Time
	lastErr  string
	rev      int64 // bumped when records or conflicts may have changed
	subs     map[chan struct{}]struct{}
}

// Open opens the device database and starts the app's background work.
func Open(ctx context.Context, cfg Config) (*App, error) {
	if cfg.Probe <= 0 {
		cfg.Probe = 3 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	reg, err := Registry()
	if err != nil {
		return nil, err
	}
	db, err := localdb.Open(ctx, cfg.DBPath, reg)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", cfg.DBPath, err)
	}
	a := &App{cfg: cfg, db: db, subs: map[chan struct{}]struct{}{}}
	a.api = client.New(cfg.Server, client.Options{Token: cfg.Token, Transport: cfg.Transport})
	a.co = coordinator.New(db, a.api, coordinator.Options{
		PushBatchSize: cfg.PushBatchSize,
		OnProgress:    a.onProgress,
		OnSync:        a.onSync,
		Logger:        cfg.Logger,
		// A person is waiting: give up retrying sooner than a daemon.
		MaxElapsed: 30 * time.Second,
	})
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.probe()
	}()
	if cfg.AutoSync > 0 {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			_ = a.co.Live(a.ctx, cfg.AutoSync)
		}()
	}
	return a, nil
}

// Close stops the background work and a sync under way, and closes the
// database.
func (a *App) Close() error {
	a.cancel()
	a.wg.Wait()
	a.co.Close()
	return a.db.Close()
}

// probe checks every Probe whether the server answers.
func (a *App) probe() {
	t := time.NewTicker(a.cfg.Probe)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(a.ctx, 2*time.Second)
		err := a.api.Health(ctx)
		cancel()
		if a.ctx.Err() != nil {
			return
		}
		a.setOnline(err == nil)
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *App) setOnline(on bool) {
	a.mu.Lock()
	changed := a.online != on || !a.checked
	a.online, a.checked = on, true
	a.mu.Unlock()
	if changed {
		a.notify(false)
	}
}

// onProgress receives the coordinator's progress; it must not block.
func (a *App) onProgress(p coordinator.Progress) {
	a.mu.Lock()
	a.progress = p
	a.mu.Unlock()
	a.notify(false)
}

// onSync records how each sync ended, the button's and background ones.
func (a *App) onSync(_ coordinator.Report, err error) {
	a.mu.Lock()
	switch {
	case err == nil:
		a.lastSync, a.lastErr, a.online, a.checked = time.Now(), "", true, true
	case errors.Is(err, coordinator.ErrOffline):
		a.lastErr, a.online, a.checked = "offline", false, true
	case errors.Is(err, context.Canceled):
		a.lastErr = "sync stopped"
	default:
		a.lastErr = err.Error()
	}
	a.mu.Unlock()
	a.notify(true) // pulled rows and conflicts
}

// notify wakes every event stream; bump also marks data as changed.
func (a *App) notify(bump bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if bump {
		a.rev++
	}
	for ch := range a.subs {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is pending already: it sends the latest state
		}
	}
}

// State is what the page shows besides the records.
type State struct {
	Name      string `json:"name"`
	Online    bool   `json:"online"`
	Checked   bool   `json:"checked"`
	Syncing   bool   `json:"syncing"`
	Phase     string `json:"phase"`
	Done      int    `json:"done"`
	Total     int    `json:"total"`
	LastSync  string `json:"lastSync"` // RFC 3339, "" when never
	LastError string `json:"lastError"`
	Pending   int    `json:"pending"`
	Conflicts int    `json:"conflicts"`
	Rev       int64  `json:"rev"`
	// Retry says, while the sync waits to try again, why and when, as
	// "retrying in 8s (attempt 4): …" (coordinator.PhaseRetry).
	Retry string `json:"retry,omitempty"`
}

// State returns the app's current state.
func (a *App) State(ctx context.Context) (State, error) {
	pending, err := a.db.Pending(ctx)
	if err != nil {
		return State{}, fmt.Errorf("state: %w", err)
	}
	cs, err := a.db.Conflicts(ctx)
	if err != nil {
		return State{}, fmt.Errorf("state: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := State{Name: a.cfg.Name, Online: a.online, Checked: a.checked, Syncing: a.co.Syncing(),
		Phase: a.progress.Phase, Done: a.progress.Done, Total: a.progress.Total, LastError: a.lastErr,
		Pending: pending, Conflicts: len(cs), Rev: a.rev}
	if s.Syncing && a.progress.Phase == coordinator.PhaseRetry {
		s.Retry = a.progress.String()
	}
	if !a.lastSync.IsZero() {
		s.LastSync = a.lastSync.Format(time.RFC3339)
	}
	return s, nil
}

// SyncResult is the answer of POST /api/sync.
type SyncResult struct {
	OK        bool           `json:"ok"`
	Offline   bool           `json:"offline"`
	Error     string         `json:"error,omitempty"`
	Pushed    map[string]int `json:"pushed"`
	Applied   int            `json:"applied"`
	Conflicts int            `json:"conflicts"`
}

// Sync runs coordinator.SyncNow for the "Sync now" button. When the page
// goes away, the request's context ends and the sync stops at a safe
// point (unless another caller waits for it).
func (a *App) Sync(ctx context.Context) SyncResult {
	rep, err := a.co.SyncNow(ctx)
	res := SyncResult{OK: err == nil, Pushed: rep.Pushed, Applied: rep.Applied, Conflicts: rep.Conflicts}
	switch {
	case errors.Is(err, coordinator.ErrOffline):
		res.Offline, res.Error = true, "offline: the server does not answer"
	case err != nil:
		res.Error = err.Error()
	}
	return res
}

// Record is a contact as the page sees it.
type Record struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Phone    string `json:"phone"`
	Dirty    bool   `json:"dirty"`
	Modified string `json:"modified"`
	By       string `json:"by"`
}

// Records lists the contacts by name.
func (a *App) Records(ctx context.Context) ([]Record, error) {
	cs, err := localdb.Query[Contact](ctx, a.db, "")
	if err != nil {
		return nil, fmt.Errorf("list contacts: %w", err)
	}
	out := make([]Record, 0, len(cs))
	for _, c := range cs {
		out = append(out, Record{ID: c.ID, Name: c.Name, Phone: c.Phone, Dirty: c.Dirty,
			Modified: c.ModifiedAt.Local().Format("15:04:05"), By: c.ModifiedBy})
	}
	sortRecords(out)
	return out, nil
}

func sortRecords(rs []Record) {
	for i := 1; i < len(rs); i++ { // insertion sort: a short list
		for j := i; j > 0 && strings.ToLower(rs[j].Name) < strings.ToLower(rs[j-1].Name); j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

// Save adds a contact (empty id) or edits one.
func (a *App) Save(ctx context.Context, r Record) (Record, error) {
	var c Contact
	if r.ID != "" {
		if err := a.db.Get(ctx, &c, r.ID); err != nil {
			return Record{}, fmt.Errorf("edit contact %s: %w", r.ID, err)
		}
	}
	c.Name, c.Phone = strings.TrimSpace(r.Name), strings.TrimSpace(r.Phone)
	if c.Name == "" {
		return Record{}, errors.New("a contact needs a name")
	}
	if err := a.db.Save(ctx, &c); err != nil {
		return Record{}, fmt.Errorf("save contact: %w", err)
	}
	a.notify(true)
	return Record{ID: c.ID, Name: c.Name, Phone: c.Phone, Dirty: true}, nil
}

// ConflictView is an open entry of the conflict log as the page sees it.
type ConflictView struct {
	ID       int64  `json:"id"`
	RowID    string `json:"rowId"`
	Strategy string `json:"strategy"`
	// MineWon reports that the server kept this device's version.
	MineWon bool   `json:"mineWon"`
	Mine    Record `json:"mine"`
	Theirs  Record `json:"theirs"`
	At      string `json:"at"`
}

// Conflicts lists the open conflicts, with this device's version and the
// other one (the server's row when it won, else the one this device's
// replaced).
func (a *App) Conflicts(ctx context.Context) ([]ConflictView, error) {
	cs, err := a.db.Conflicts(ctx)
	if err != nil {
		return nil, fmt.Errorf("conflict log: %w", err)
	}
	out := make([]ConflictView, 0, len(cs))
	for _, c := range cs {
		theirs := c.Winning
		mineWon := c.Winner != wire.WinnerServer
		if mineWon && c.Lost != nil {
			theirs = *c.Lost
		}
		out = append(out, ConflictView{ID: c.ID, RowID: c.RowID, Strategy: c.Strategy, MineWon: mineWon,
			Mine: recordOf(c.Local), Theirs: recordOf(theirs), At: c.At.Local().Format("15:04:05")})
	}
	return out, nil
}

func recordOf(r wire.Row) Record {
	str := func(k string) string {
		if v, ok := r.Values[k]; ok && v != nil {
			return fmt.Sprint(v)
		}
		return ""
	}
	return Record{ID: r.ID, Name: str("name"), Phone: str("phone"), By: r.ModifiedBy}
}

// KeepMine resolves a conflict with this device's version: it is written
// again as a new edit, which wins the next push.
func (a *App) KeepMine(ctx context.Context, id int64) error {
	if err := a.db.KeepLocal(ctx, id); err != nil {
		return fmt.Errorf("keep mine %d: %w", id, err)
	}
	a.notify(true)
	return nil
}

// TakeTheirs resolves a conflict with the other version. When the server
// kept the other version, that is closing the entry; when it kept this
// device's, the other version is written again as a new edit.
func (a *App) TakeTheirs(ctx context.Context, id int64) error {
	views, err := a.Conflicts(ctx)
	if err != nil {
		return err
	}
	for _, v := range views {
		if v.ID != id || !v.MineWon {
			continue
		}
		var c Contact
		if err := a.db.Get(ctx, &c, v.RowID); err != nil {
			return fmt.Errorf("take theirs %d: %w", id, err)
		}
		c.Name, c.Phone = v.Theirs.Name, v.Theirs.Phone
		if err := a.db.Save(ctx, &c); err != nil {
			return fmt.Errorf("take theirs %d: %w", id, err)
		}
	}
	if err := a.db.DismissConflict(ctx, id); err != nil {
		return fmt.Errorf("take theirs %d: %w", id, err)
	}
	a.notify(true)
	return nil
}

// Handler returns the app's web UI and its JSON API.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	ui, _ := fs.Sub(uiFiles, "ui")
	mux.Handle("GET /", http.FileServerFS(ui))
	mux.HandleFunc("GET /api/state", func(w http.ResponseWriter, r *http.Request) {
		s, err := a.State(r.Context())
		reply(w, s, err)
	})
	mux.HandleFunc("GET /api/events", a.events)
	mux.HandleFunc("GET /api/records", func(w http.ResponseWriter, r *http.Request) {
		rs, err := a.Records(r.Context())
		reply(w, rs, err)
	})
	mux.HandleFunc("POST /api/records", func(w http.ResponseWriter, r *http.Request) {
		var in Record
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&in); err != nil {
			http.Error(w, "bad record: "+err.Error(), http.StatusBadRequest)
			return
		}
		out, err := a.Save(r.Context(), in)
		reply(w, out, err)
	})
	mux.HandleFunc("POST /api/sync", func(w http.ResponseWriter, r *http.Request) {
		reply(w, a.Sync(r.Context()), nil)
	})
	mux.HandleFunc("GET /api/conflicts", func(w http.ResponseWriter, r *http.Request) {
		cs, err := a.Conflicts(r.Context())
		reply(w, cs, err)
	})
	mux.HandleFunc("POST /api/conflicts/{id}/{choice}", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil {
			http.Error(w, "bad conflict id", http.StatusBadRequest)
			return
		}
		switch r.PathValue("choice") {
		case "keep-mine":
			err = a.KeepMine(r.Context(), id)
		case "take-theirs":
			err = a.TakeTheirs(r.Context(), id)
		default:
			http.Error(w, "choose keep-mine or take-theirs", http.StatusBadRequest)
			return
		}
		reply(w, map[string]bool{"ok": err == nil}, err)
	})
	return mux
}

// events streams the state to the page (server-sent events) each time it
// changes: sync progress live from OnProgress, online state, edits.
func (a *App) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	wake := make(chan struct{}, 1)
	a.mu.Lock()
	a.subs[wake] = struct{}{}
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.subs, wake)
		a.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	wake <- struct{}{} // the first state at once
	for {
		select {
		case <-r.Context().Done():
			return
		case <-a.ctx.Done():
			return
		case <-wake:
		}
		s, err := a.State(r.Context())
		if err != nil {
			return
		}
		data, _ := json.Marshal(s)
		if _, err := fmt.Fprintf(w, "data: %s\n\n", data); err != nil {
			return
		}
		flusher.Flush()
	}
}

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, localdb.ErrNotFound) || errors.Is(err, localdb.ErrConflictClosed) {
			status = http.StatusNotFound
		}
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	json.NewEncoder(w).Encode(v)
}
