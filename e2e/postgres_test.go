package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
)

func TestMain(m *testing.M) {
	os.Exit(stores.Main(m))
}

// eachSharedStore runs f as a subtest per kind of store several server
// processes can share (stores.Shared).
func eachSharedStore(t *testing.T, f func(t *testing.T, kind string)) {
	stores.Each(t, stores.Shared, func(t *testing.T, db stores.Database) { f(t, db.Kind) })
}

// sharedStore opens one store of kind on a new database.
func sharedStore(t *testing.T, kind string, reg *entity.Registry) server.Store {
	return stores.Open(t, kind, reg.Schema(), stores.Options{})
}

// servers starts n server processes' worth of stores of kind and their
// handlers over one database: each has its own connection pool and shares
// nothing with the others but the database.
func servers(t *testing.T, kind string, reg *entity.Registry, n int) []string {
	t.Helper()
	db := stores.NewDatabase(t, kind)
	var urls []string
	for range n {
		store := db.Open(t, reg.Schema(), stores.Options{})
		urls = append(urls, testkit.Serve(t, store, server.Options{}).URL)
	}
	return urls
}

// alternate sends each request to the next server in turn, so that one
// push session spans several server processes.
type alternate struct {
	hosts []string
	n     atomic.Int64
}

func (a *alternate) RoundTrip(r *http.Request) (*http.Response, error) {
	u, err := url.Parse(a.hosts[int(a.n.Add(1))%len(a.hosts)])
	if err != nil {
		return nil, err
	}
	r = r.Clone(r.Context())
	r.URL.Host, r.Host = u.Host, u.Host
	return http.DefaultTransport.RoundTrip(r)
}

// Devices talk to two server processes in turn, even within one push
// session, and everything converges.
func TestSeveralServers(t *testing.T) { eachSharedStore(t, severalServers) }

func severalServers(t *testing.T, kind string) {
	reg := testkit.Registry(t)
	urls := servers(t, kind, reg, 2)
	var devs []*testkit.Device
	for range 3 {
		devs = append(devs, testkit.NewDevice(t, reg, urls[0], testkit.DeviceOptions{
			Transport: &alternate{hosts: urls},
			Co:        coordinator.Options{PushBatchSize: 3, PullBatchSize: 4},
		}))
	}
	for round := range 4 {
		for i, d := range devs {
			saveCustomers(t, d, 5, fmt.Sprintf("r%d-d%d", round, i))
			if round > 0 { // an edit of a row another device made
				cs, err := localdb.Query[testkit.Customer](ctx, d.DB, "")
				if err != nil || len(cs) == 0 {
					t.Fatalf("query: %d rows, %v", len(cs), err)
				}
				cs[round%len(cs)].Name += " (edited)"
				if err := d.DB.Save(ctx, &cs[round%len(cs)]); err != nil {
					t.Fatal(err)
				}
			}
			d.Sync(t)
		}
	}
	for _, d := range devs { // everyone syncs twice once writes stop (G6)
		d.Sync(t)
	}
	for _, d := range devs {
		d.Sync(t)
	}
	want := names(t, devs[0])
	if len(want) != 3*4*5 {
		t.Fatalf("device 0 holds %d customers, want %d", len(want), 3*4*5)
	}
	for i, d := range devs[1:] {
		if got := names(t, d); !reflect.DeepEqual(got, want) {
			t.Errorf("device %d differs from device 0:\n%v\n%v", i+1, got, want)
		}
	}
}

func names(t *testing.T, d *testkit.Device) map[string]string {
	t.Helper()
	cs, err := localdb.Query[testkit.Customer](ctx, d.DB, "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range cs {
		out[c.ID] = c.Name
	}
	return out
}

// Eight devices push sessions concurrently through two server processes
// while four pull: every puller ends with every row (G1). The sharper check
// of commit order, without HTTP in between, is the server package's
// TestCommitOrder.
func TestConcurrentCommitOrder(t *testing.T) { eachSharedStore(t, concurrentCommitOrder) }

func concurrentCommitOrder(t *testing.T, kind string) {
	reg := testkit.Registry(t)
	urls := servers(t, kind, reg, 2)
	const pushers, pullers, rounds, perRound = 8, 4, 5, 20
	var wg sync.WaitGroup
	errs := make(chan error, pushers+pullers)
	for p := range pushers {
		d := testkit.NewDevice(t, reg, urls[p%2], testkit.DeviceOptions{Co: coordinator.Options{PushBatchSize: 7}})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				err := d.DB.Update(ctx, func(tx *localdb.Tx) error {
					for i := range perRound {
						c := testkit.Customer{ID: fmt.Sprintf("p%d-r%d-%02d", p, r, i), Name: "x"}
						if err := tx.Save(ctx, &c); err != nil {
							return err
						}
					}
					return nil
				})
				if err == nil {
					_, err = d.Co.SyncNow(ctx)
				}
				if err != nil {
					errs <- fmt.Errorf("pusher %d: %w", p, err)
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	var pulls sync.WaitGroup
	var readers []*testkit.Device
	for q := range pullers {
		d := testkit.NewDevice(t, reg, urls[q%2], testkit.DeviceOptions{Co: coordinator.Options{PullBatchSize: 13}})
		readers = append(readers, d)
		pulls.Add(1)
		go func() {
			defer pulls.Done()
			deadline := time.Now().Add(2 * time.Minute)
			for time.Now().Before(deadline) {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := d.Co.SyncNow(ctx); err != nil {
					errs <- fmt.Errorf("puller %d: %w", q, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	pulls.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, d := range readers {
		d.Sync(t) // one more pull: only what committed after the last one
		if n := len(names(t, d)); n != pushers*rounds*perRound {
			t.Errorf("puller %d holds %d rows, want %d: a cursor passed a later commit", i, n, pushers*rounds*perRound)
		}
	}
}
