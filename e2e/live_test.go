package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
)

// liveDevice starts a device in live mode with an interval far longer than
// the test, so only change events make it sync. It returns the device and
// a channel that receives each finished sync.
func liveDevice(t *testing.T, reg *entity.Registry, url string) (*testkit.Device, <-chan struct{}) {
	t.Helper()
	synced := make(chan struct{}, 100)
	d := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Co: coordinator.Options{
		LiveDebounce: 20 * time.Millisecond, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		OnProgress: func(p coordinator.Progress) {
			if p.Phase == coordinator.PhaseDone {
				select {
				case synced <- struct{}{}:
				default:
				}
			}
		},
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Co.Live(ctx, time.Hour) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitSync(t, synced) // the first sync, at start
	waitSync(t, synced) // the sync once the event stream is open
	return d, synced
}

func waitSync(t *testing.T, synced <-chan struct{}) {
	t.Helper()
	select {
	case <-synced:
	case <-time.After(20 * time.Second):
		t.Fatal("no sync within 20s")
	}
}

// drain forgets the syncs reported so far.
func drain(synced <-chan struct{}) {
	for {
		select {
		case <-synced:
		default:
			return
		}
	}
}

// waitRow waits until d holds customer id.
func waitRow(t *testing.T, d *testkit.Device, id string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var c testkit.Customer
		if err := d.DB.Get(ctx, &c, id); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("customer %s did not arrive within 20s", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func pushCustomer(t *testing.T, d *testkit.Device, id string) {
	t.Helper()
	c := testkit.Customer{ID: id, Name: "live " + id}
	if err := d.DB.Save(ctx, &c); err != nil {
		t.Fatal(err)
	}
	d.Sync(t)
}

// A device in live mode pulls soon after another device's push, and
// reconnects when the stream drops.
func TestLiveSQLite(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	writer := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{})
	reader, synced := liveDevice(t, reg, srv.URL)
	pushCustomer(t, writer, "c1")
	waitRow(t, reader, "c1")
	waitSync(t, synced) // the sync that brought c1 has ended

	// Drop every connection, the event stream among them: the reader
	// reconnects, syncs, and follows the next change too. Once the sync
	// after reopening has ended, only an event can bring c2.
	drain(synced)
	srv.CloseClientConnections()
	waitSync(t, synced) // the sync once the stream is open again
	pushCustomer(t, writer, "c2")
	waitRow(t, reader, "c2")
}

// Across server processes on one database, the signal travels through the
// database (LISTEN/NOTIFY on PostgreSQL, the tenants' versions polled on
// MySQL): the reader follows server 2 while the writer pushes to server 1.
func TestLiveAcrossServers(t *testing.T) { eachSharedStore(t, liveAcrossServers) }

func liveAcrossServers(t *testing.T, kind string) {
	reg := testkit.Registry(t)
	urls := servers(t, kind, reg, 2)
	writer := testkit.NewDevice(t, reg, urls[0], testkit.DeviceOptions{})
	reader, _ := liveDevice(t, reg, urls[1])
	for i := range 3 {
		id := fmt.Sprintf("c%d", i)
		pushCustomer(t, writer, id)
		waitRow(t, reader, id)
	}
	rows, err := localdb.Query[testkit.Customer](ctx, reader.DB, "")
	if err != nil || len(rows) != 3 {
		t.Errorf("reader holds %d customers (%v), want 3", len(rows), err)
	}
}
