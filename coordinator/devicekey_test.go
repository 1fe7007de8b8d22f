package coordinator_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/wire"
)

// keyWatch is a transport that records the device and key of every request
// naming a device, by kind (testkit.Kind), and answers the requests of
// kind refuseKind itself with the API error refuseCode and refuseStatus,
// without delivering them: the answers of a server that checks keys.
type keyWatch struct {
	refuseKind, refuseCode string
	refuseStatus           int

	mu   sync.Mutex
	seen []named
}

type named struct{ kind, device, key string }

func (w *keyWatch) RoundTrip(r *http.Request) (*http.Response, error) {
	kind := testkit.Kind(r)
	if d := r.Header.Get(wire.HeaderDevice); d != "" {
		w.mu.Lock()
		w.seen = append(w.seen, named{kind, d, r.Header.Get(wire.HeaderDeviceKey)})
		w.mu.Unlock()
	}
	if kind == w.refuseKind {
		if r.Body != nil {
			r.Body.Close()
		}
		body := fmt.Sprintf(`{"error":{"code":%q,"message":"injected"}}`, w.refuseCode)
		return &http.Response{StatusCode: w.refuseStatus, Status: http.StatusText(w.refuseStatus),
			Header:  http.Header{"Content-Type": {"application/json"}},
			Body:    io.NopCloser(strings.NewReader(body)),
			Request: r, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}, nil
	}
	return http.DefaultTransport.RoundTrip(r)
}

// requests returns what was recorded so far.
func (w *keyWatch) requests() []named {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]named(nil), w.seen...)
}

// count returns how many requests of kind were recorded.
func (w *keyWatch) count(kind string) int {
	n := 0
	for _, r := range w.requests() {
		if r.kind == kind {
			n++
		}
	}
	return n
}

// A coordinator made with New, as every app makes it, sends its database's
// device key with every request that names the device: registration,
// push and pull.
func TestSyncSendsDeviceKey(t *testing.T) {
	reg, srv := newServer(t)
	w := &keyWatch{}
	d := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Transport: w})
	save(t, d, 3, "k")
	d.Sync(t)
	want := d.DB.Syncer().DeviceKey()
	kinds := map[string]bool{}
	for _, r := range w.requests() {
		kinds[r.kind] = true
		if r.device != d.DB.DeviceID() || r.key != want {
			t.Errorf("%s request named %s with key of %d characters (the database's: %v), want %s with the database's key",
				r.kind, r.device, len(r.key), r.key == want, d.DB.DeviceID())
		}
	}
	for _, k := range []string{"devices", "commit", "changes"} {
		if !kinds[k] {
			t.Errorf("no %s request naming the device; saw %v", k, kinds)
		}
	}
}

// A device registered before device keys (its registration mark made
// without the key) registers once more at its next sync, which records
// its key with the server; afterwards it does not register again.
func TestSyncRegistersAgainForTheKey(t *testing.T) {
	reg, srv := newServer(t)
	w := &keyWatch{}
	d := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Transport: w})
	d.Sync(t)
	d.Sync(t)
	if n := w.count("devices"); n != 1 {
		t.Fatalf("registrations after two syncs = %d, want 1", n)
	}
	js, err := json.Marshal(reg.Schema())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(js) // the mark of a registration without a key
	if err := d.DB.Syncer().SetRegistration(context.Background(), hex.EncodeToString(sum[:])); err != nil {
		t.Fatal(err)
	}
	d.Sync(t)
	d.Sync(t)
	if n := w.count("devices"); n != 2 {
		t.Errorf("registrations after two more syncs from a keyless registration = %d, want 2", n)
	}
}

// A refused device key and the user's device limit are permanent: the
// sync ends at the first answer, without retries, with an error that says
// what it means.
func TestSyncDeviceRefusals(t *testing.T) {
	for _, tt := range []struct {
		code     string
		status   int
		sentinel error
		says     string
	}{
		{"device_key", http.StatusForbidden, wire.ErrDeviceKey, "registration under another key"},
		{"device_limit", http.StatusConflict, wire.ErrDeviceLimit, "too many devices in use"},
	} {
		t.Run(tt.code, func(t *testing.T) {
			reg, srv := newServer(t)
			w := &keyWatch{refuseKind: "devices", refuseCode: tt.code, refuseStatus: tt.status}
			d := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Transport: w})
			ctx, cancel := context.WithTimeout(context.Background(), guard)
			defer cancel()
			rep, err := d.Co.SyncNow(ctx)
			if !errors.Is(err, tt.sentinel) || !errors.Is(err, wire.ErrRefused) {
				t.Fatalf("SyncNow() error = %v, want %v (refused)", err, tt.sentinel)
			}
			if !strings.Contains(err.Error(), tt.says) || !strings.Contains(err.Error(), d.DB.DeviceID()) {
				t.Errorf("SyncNow() error = %q, want it to say %q and name the device", err, tt.says)
			}
			if n := w.count("devices"); rep.Attempts != 1 || n != 1 {
				t.Errorf("attempts %d, registrations %d; want 1 and 1 (not retried)", rep.Attempts, n)
			}
		})
	}
}
