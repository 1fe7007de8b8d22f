package main

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/tethersync/tether/internal/sqlitedriver" // the SQLite driver
	"github.com/tethersync/tether/wire"
)

// guard bounds every wait of this test: a hang detector, not a speed
// requirement.
const guard = 90 * time.Second

// The agent as operators run it: built, started as a process against the
// server binary, through the server's stop and restart, stopped with
// SIGTERM in the middle of a sync, started again; every reading it
// recorded is on the server exactly once.
func TestAgentProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs two binaries")
	}
	dir := t.TempDir()
	agentBin := build(t, dir, "fielddevice", ".")
	serverBin := build(t, dir, "tether-server", "github.com/tethersync/tether/cmd/tether-server")

	reg, err := Registry()
	if err != nil {
		t.Fatal(err)
	}
	schema, err := json.Marshal(reg.Schema())
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "schema.json"), string(schema))
	write(t, filepath.Join(dir, "tokens.json"), `{"token-field": {"tenant": "acme", "user": "probe-7"}}`)
	serverDB := filepath.Join(dir, "server.db")
	addr := freeAddr(t)
	startServer := func() *proc {
		p := start(t, "server", serverBin, nil, "-listen", addr, "-db", serverDB,
			"-schema", filepath.Join(dir, "schema.json"), "-tokens", filepath.Join(dir, "tokens.json"))
		until(t, "the server to answer", func() bool {
			resp, err := http.Get("http://" + addr + "/v1/health")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		})
		return p
	}
	srv := startServer()

	// The agent talks to the server through a proxy on loopback, which
	// can hold a batch on the wire and counts what it forwards.
	px := &proxy{target: &url.URL{Scheme: "http", Host: addr}}
	front := httptest.NewServer(px)
	defer front.Close()

	deviceDB := filepath.Join(dir, "device.db")
	agentArgs := func(sample string) []string {
		return []string{"-db", deviceDB, "-name", "probe-7", "-interval", "50ms", "-sample", sample,
			"-push-batch", "5", "-status", "127.0.0.1:0"}
	}
	// Configuration from the environment and from flags.
	// A sync cut by the server's stop retries for 2s, then the round fails.
	env := []string{"TETHER_SERVER=" + front.URL, "TETHER_TOKEN=token-field", "TETHER_LOG_LEVEL=info", "TETHER_RETRY_FOR=2s"}

	// 1. Recording and syncing.
	a1 := start(t, "agent", agentBin, env, agentArgs("5ms")...)
	st := a1.waitStatus(t, "a first sync of 20 readings", func(s Status) bool { return !s.LastSuccess.IsZero() && s.Recorded >= 20 })
	t.Logf("online: %+v", st)

	// 2. The server stops: the agent keeps recording, and says so.
	srv.stop(t)
	stopped := time.Now()
	st = a1.waitStatus(t, "a failed sync", func(s Status) bool { return s.LastErrorAt.After(stopped) && s.Failures >= 1 })
	recorded := st.Recorded
	st = a1.waitStatus(t, "readings while offline", func(s Status) bool { return s.Recorded >= recorded+20 && s.Pending > 0 })
	t.Logf("offline: %+v", st)
	if !strings.Contains(st.LastError, "unreachable") {
		t.Errorf("last error %q, want the server unreachable", st.LastError)
	}

	// 3. The server comes back on its file: the agent catches up.
	srv = startServer()
	restarted := time.Now()
	st = a1.waitStatus(t, "a sync after the restart", func(s Status) bool { return s.LastSuccess.After(restarted) })
	t.Logf("back: %+v", st)

	// 4. SIGTERM while a batch is on the wire: the agent lets that batch
	// complete (the safe point), sends nothing more, and exits.
	reached, release := px.hold()
	select {
	case <-reached:
	case <-time.After(guard):
		t.Fatal("no batch went up")
	}
	a1.signal(t, syscall.SIGTERM)
	a1.waitLog(t, "fielddevice shutting down")
	after, held := px.counts(), px.last()
	close(release)
	if code := a1.wait(t); code != 0 {
		t.Fatalf("agent exited with %d after SIGTERM, want 0", code)
	}
	if d := px.counts().sub(after); d.batches != 0 || d.commits != 0 {
		t.Errorf("after the held batch the stopping agent sent %d batches and %d commits, want none", d.batches, d.commits)
	}
	a1.waitLog(t, "sync stopped at a safe point")
	last := a1.waitLog(t, "fielddevice stopped")
	t.Logf("stopped: %v", last)

	// 5. Started again, it resumes the interrupted push session.
	mark := px.counts()
	a2 := start(t, "agent", agentBin, env, agentArgs("5ms")...)
	st = a2.waitStatus(t, "a sync after the restart", func(s Status) bool { return !s.LastSuccess.IsZero() && s.Recorded >= last.readings()+10 })
	resumed := px.since(mark)
	switch {
	case held.final:
		// The held batch was the session's last and committed it: the
		// session is over, and the next push is a new one.
		for _, e := range resumed {
			if e.session == held.session {
				t.Errorf("after the restart the agent sent %+v of session %s, which its last batch committed", e, held.session)
			}
		}
	case len(resumed) == 0 || resumed[0].session != held.session || (resumed[0].commit == (resumed[0].seq >= 0)) ||
		(!resumed[0].commit && resumed[0].seq != held.seq+1):
		t.Errorf("after the restart the agent sent %+v first, want session %s resumed after batch %d (its next batch or its commit)",
			resumed, held.session, held.seq)
	}
	for _, e := range resumed {
		if e.session == held.session && !e.commit && e.seq <= held.seq {
			t.Errorf("acknowledged batch %d of the interrupted session sent again", e.seq)
		}
	}
	a2.signal(t, syscall.SIGTERM)
	if code := a2.wait(t); code != 0 {
		t.Fatalf("agent exited with %d, want 0", code)
	}

	// 6. One last run that records nothing and syncs what is left.
	a3 := start(t, "agent", agentBin, env, agentArgs("0")...)
	st = a3.waitStatus(t, "nothing pending", func(s Status) bool { return !s.LastSuccess.IsZero() && s.Pending == 0 })
	a3.signal(t, syscall.SIGTERM)
	if code := a3.wait(t); code != 0 {
		t.Fatalf("agent exited with %d, want 0", code)
	}
	for _, p := range []*proc{a1, a2, a3} {
		p.checkJSONLogs(t)
	}

	// Every reading recorded is on the server exactly once.
	dev := openRO(t, deviceDB)
	var n, maxSeq, distinct int64
	if err := dev.QueryRow(`SELECT count(*), max(seq), count(DISTINCT seq) FROM readings WHERE device = 'probe-7'`).Scan(&n, &maxSeq, &distinct); err != nil {
		t.Fatal(err)
	}
	if n != maxSeq || n != distinct || n != st.Recorded {
		t.Fatalf("device: %d readings, seq up to %d, %d distinct, status says %d: want one per seq without gaps", n, maxSeq, distinct, st.Recorded)
	}
	ids := map[string]int64{}
	rows, err := dev.Query(`SELECT id, seq FROM readings`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var seq int64
		if err := rows.Scan(&id, &seq); err != nil {
			t.Fatal(err)
		}
		ids[id] = seq
	}
	rows.Close()

	sdb := openRO(t, serverDB)
	rows, err = sdb.Query(`SELECT id, seq FROM readings WHERE _tenant = 'acme' AND _deleted = 0`)
	if err != nil {
		t.Fatal(err)
	}
	onServer := 0
	for rows.Next() {
		var id string
		var seq int64
		if err := rows.Scan(&id, &seq); err != nil {
			t.Fatal(err)
		}
		if want, ok := ids[id]; !ok || want != seq {
			t.Errorf("server holds reading %s seq %d the device does not", id, seq)
		}
		onServer++
	}
	rows.Close()
	if onServer != len(ids) {
		t.Errorf("server holds %d readings, the device recorded %d", onServer, len(ids))
	}
	// Applied once each: the server's audit log has one entry per reading.
	var applied, twice int
	if err := sdb.QueryRow(`SELECT count(*), count(*) - count(DISTINCT id) FROM _tether_audit WHERE tenant = 'acme' AND tbl = 'readings'`).Scan(&applied, &twice); err != nil {
		t.Fatal(err)
	}
	if applied != len(ids) || twice != 0 {
		t.Errorf("audit: %d changes applied for %d readings (%d repeated), want each once", applied, len(ids), twice)
	}
	t.Logf("%d readings recorded across 3 runs, a server restart and a SIGTERM mid-sync; all on the server once", len(ids))
	srv.stop(t)
}

// build compiles pkg into dir and returns the binary's path.
func build(t *testing.T, dir, name, pkg string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	if runtime.GOOS == "windows" {
		out += ".exe"
	}
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// freeAddr returns a loopback address that was free a moment ago, so that
// the server can be restarted on the same one.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func openRO(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// until polls cond until it holds, failing after guard.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// proc is a running process and its log lines (standard error).
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}

	mu     sync.Mutex
	lines  []string
	logs   []logLine
	status string // the agent's status address
}

type logLine map[string]any

func (l logLine) readings() int64 {
	f, _ := l["readings"].(float64)
	return int64(f)
}

func start(t *testing.T, name, bin string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go p.read(stderr)
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			p.mu.Lock()
			t.Logf("%s log:\n%s", name, strings.Join(p.lines, "\n"))
			p.mu.Unlock()
		}
	})
	return p
}

func (p *proc) read(r io.Reader) {
	defer func() {
		p.cmd.Wait()
		close(p.done)
	}()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		var l logLine
		p.mu.Lock()
		p.lines = append(p.lines, line)
		if json.Unmarshal([]byte(line), &l) == nil {
			p.logs = append(p.logs, l)
			if l["msg"] == "status endpoint listening" {
				p.status, _ = l["addr"].(string)
			}
		}
		p.mu.Unlock()
	}
}

func (p *proc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", p.name, err)
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(guard):
		t.Fatalf("%s did not exit", p.name)
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.signal(t, syscall.SIGTERM)
	p.wait(t)
}

// waitLog waits for a log line with the message msg.
func (p *proc) waitLog(t *testing.T, msg string) logLine {
	t.Helper()
	var found logLine
	until(t, fmt.Sprintf("%s to log %q", p.name, msg), func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, l := range p.logs {
			if l["msg"] == msg {
				found = l
				return true
			}
		}
		return false
	})
	return found
}

// waitStatus polls the agent's status endpoint until cond holds.
func (p *proc) waitStatus(t *testing.T, what string, cond func(Status) bool) Status {
	t.Helper()
	var st Status
	until(t, what, func() bool {
		p.mu.Lock()
		addr := p.status
		p.mu.Unlock()
		if addr == "" {
			return false
		}
		resp, err := http.Get("http://" + addr + "/status")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		st = Status{}
		return json.NewDecoder(resp.Body).Decode(&st) == nil && cond(st)
	})
	return st
}

// checkJSONLogs checks that every log line is a JSON object with a level
// and a message.
func (p *proc) checkJSONLogs(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.lines) == 0 || len(p.lines) != len(p.logs) {
		t.Errorf("%s: %d log lines, %d of them JSON", p.name, len(p.lines), len(p.logs))
	}
	for _, l := range p.logs {
		if l["level"] == nil || l["msg"] == nil || l["time"] == nil {
			t.Errorf("%s: log line without time, level or msg: %v", p.name, l)
		}
	}
}

// proxy forwards to target, counts batches and commits, and can hold the
// next batch.
type proxy struct {
	target *url.URL

	mu      sync.Mutex
	n       counts
	events  []event // batches and commits, in arrival order
	reached chan struct{}
	release chan struct{}
}

type counts struct{ batches, commits int }

// event is a batch (seq >= 0) or a commit (seq -1) of a push session. A
// final batch is sent with the commit (wire.BatchCommit).
type event struct {
	session string
	seq     int
	commit  bool
	final   bool
}

// sessionOf returns the session id in a path /v1/sessions/<id>/...
func sessionOf(p string) string {
	rest := p[strings.Index(p, "/sessions/")+len("/sessions/"):]
	return rest[:strings.Index(rest, "/")]
}

func (c counts) sub(d counts) counts { return counts{c.batches - d.batches, c.commits - d.commits} }

func (p *proxy) hold() (reached, release chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reached, p.release = make(chan struct{}), make(chan struct{})
	return p.reached, p.release
}

func (p *proxy) counts() counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// last returns the last batch seen.
func (p *proxy) last() event {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.events) - 1; i >= 0; i-- {
		if !p.events[i].commit {
			return p.events[i]
		}
	}
	return event{}
}

// since returns the batches and commits after the mark.
func (p *proxy) since(mark counts) []event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]event(nil), p.events[mark.batches+mark.commits:]...)
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(r.URL.Path, "/batches/") {
		p.mu.Lock()
		reached, release := p.reached, p.release
		p.reached = nil
		p.n.batches++
		seq, _ := strconv.Atoi(path.Base(r.URL.Path))
		p.events = append(p.events, event{session: sessionOf(r.URL.Path), seq: seq, final: r.URL.Query().Get(wire.BatchCommit) == "1"})
		p.mu.Unlock()
		if reached != nil {
			close(reached)
			select {
			case <-release:
			case <-time.After(guard):
			}
		}
	} else if strings.HasSuffix(r.URL.Path, "/commit") {
		p.mu.Lock()
		p.n.commits++
		p.events = append(p.events, event{session: sessionOf(r.URL.Path), seq: -1, commit: true})
		p.mu.Unlock()
	}
	rp := httputil.NewSingleHostReverseProxy(p.target)
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		http.Error(w, "upstream: "+err.Error(), http.StatusBadGateway)
	}
	rp.ServeHTTP(w, r)
}
