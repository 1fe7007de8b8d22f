package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
)

// A field tablet shared by several people in turns: Ada's sync stops after
// its batch was staged; Bob, on the same device with his own token, cannot
// use Ada's session (G14), so his sync abandons it and pushes the rows in a
// session of his own, recorded as written by Bob, who sent them.
func TestSharedDeviceTakesTurns(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	path := t.TempDir() + "/tablet.db"
	noCommit := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
		if kind == "commit" {
			return testkit.DropRequest
		}
		return testkit.Pass
	}}
	// Batches of 2: the first is staged, the last (which commits) is lost.
	quick := coordinator.Options{PushBatchSize: 2, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, MaxElapsed: 200 * time.Millisecond}
	ada := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Path: path, Transport: noCommit, Co: quick})
	saveCustomers(t, ada, 3, "typed on the tablet")
	if _, err := ada.Co.SyncNow(ctx); err == nil {
		t.Fatal("Ada's sync succeeded without a commit")
	}
	if noCommit.Count("batches") == 0 {
		t.Fatal("no batch was staged")
	}
	ada.Co.Close()
	ada.DB.Close()

	bob := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Path: path, Token: "token-bob"})
	bob.Sync(t)
	got := testkit.Dump(t, srv.Store.DB(), "customers", []string{"_modified_by"}, "acme")
	if len(got) != 3 {
		t.Fatalf("server holds %d customers, want 3: %v", len(got), got)
	}
	for _, row := range got {
		if !strings.HasSuffix(row, "|bob|0") {
			t.Errorf("customer %s: want it written by bob, whose token pushed it", row)
		}
	}
}
