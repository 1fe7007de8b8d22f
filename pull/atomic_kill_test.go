package pull_test

import (
	"bufio"
	"net/http"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tethersync/tether/internal/sqlitedriver"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/pull"
	"github.com/tethersync/tether/server"
)

// Environment of the child process of TestPullKilledInsideASession.
const (
	childDBEnv  = "TETHER_PULL_CHILD_DB"
	childURLEnv = "TETHER_PULL_CHILD_URL"
	childReady  = "stalled in the third page"
)

// G4, G5: a device process killed (SIGKILL) inside a session, with two of
// its pages set aside, shows none of the session when it starts again,
// and its next pull goes on from the pages it set aside: the session
// arrives whole, and what was set aside is not fetched again.
func TestPullKilledInsideASession(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	w := newWriter(t, reg, srv.URL)
	bigOrder(t, w, 1400)

	path := t.TempDir() + "/device.db"
	cmd := exec.Command(os.Args[0], "-test.run=^TestPullKilledChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childDBEnv+"="+path, childURLEnv+"="+srv.URL)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	limit := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
	defer limit.Stop()
	stalled := false
	for sc := bufio.NewScanner(out); sc.Scan(); {
		if sc.Text() == childReady {
			stalled = true
			break
		}
	}
	cmd.Process.Kill() // SIGKILL: no deferred close, no rollback of its own
	cmd.Wait()
	if !stalled {
		t.Fatal("the child device did not reach its third page")
	}

	tr := newCursors(testkit.Pass)
	db, api := device(t, reg, srv.URL, "token-ada", tr, path)
	if c, o := counts(t, db); c != 0 || o != 0 {
		t.Fatalf("after the kill the app sees %d customers and %d orders, want none of the session", c, o)
	}
	stored := cursor(t, db)
	if stored == "" {
		t.Fatal("no cursor stored: the pages before the kill were not set aside")
	}
	res, err := pull.New(db.Syncer(), api, pull.Options{PageSize: 500}).Pull(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if sent := tr.take(); len(sent) == 0 || sent[0] != stored {
		t.Errorf("the pull after the kill sent %q, want it to go on from %q", sent, stored)
	}
	if res.Rows["orders"] >= 1400 {
		t.Errorf("the pull after the kill fetched %v, want only what was not set aside", res.Rows)
	}
	if c, o := counts(t, db); c != 1 || o != 1400 {
		t.Fatalf("after the pull: %d customers, %d orders, want 1 and 1,400", c, o)
	}
}

// TestPullKilledChild is the device process TestPullKilledInsideASession
// kills: it pulls in pages of 500 rows and stalls in its third page's
// request, after two pages were set aside, until it is killed.
func TestPullKilledChild(t *testing.T) {
	path, url := os.Getenv(childDBEnv), os.Getenv(childURLEnv)
	if path == "" {
		t.Skip("the child process of TestPullKilledInsideASession")
	}
	reg := testkit.Registry(t)
	db, api := device(t, reg, url, "token-ada", &stallThird{next: http.DefaultTransport, path: path}, path)
	_, err := pull.New(db.Syncer(), api, pull.Options{PageSize: 500}).Pull(testCtx(t))
	t.Fatalf("the pull ended (%v): it should have been killed in its third page", err)
}

// stallThird passes requests on, but stalls the third changes request
// for good, after saying so on stdout once the two pages before it are
// set aside in the database at path: the engine asks for a page as soon
// as the one before it tells where it ends, before it sets either aside.
type stallThird struct {
	next    http.RoundTripper
	path    string
	changes atomic.Int32
}

func (s *stallThird) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == "/v1/changes" && s.changes.Add(1) == 3 {
		waitStashed(s.path, 2)
		os.Stdout.WriteString(childReady + "\n")
		<-r.Context().Done() // killed first
		return nil, r.Context().Err()
	}
	return s.next.RoundTrip(r)
}

// waitStashed waits, at most 30 s, until the device database at path has
// n pages set aside.
func waitStashed(path string, n int) {
	db, err := sqlitedriver.Open(path, sqlitedriver.Config{ReadOnly: true})
	if err != nil {
		return
	}
	defer db.Close()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var got int
		if err := db.QueryRow(`SELECT count(*) FROM _tether_stash`).Scan(&got); err == nil && got >= n {
			return
		}
	}
}
