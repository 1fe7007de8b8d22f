package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/localdb"
)

// exitRevoked is the agent's exit status once the server revoked the
// device and the agent wiped its database. The systemd unit does not
// restart it (RestartPreventExitStatus); started again all the same (a
// reboot), the agent finds the marker the wipe left next to the database
// (revokedMarker), wipes the database again and exits with it, without
// syncing: a new, empty database would register as a new device.
const exitRevoked = 3

// errRevoked is run's error once the device was revoked and its database
// wiped.
var errRevoked = errors.New("device revoked: database wiped")

// wipe is what the agent does when the server refuses the device as
// revoked (a lost or stolen device, coordinator.ErrRevoked): it stops
// syncing and serving its status, wipes its database (localdb.DB.Wipe:
// readings and tether's bookkeeping, pending ones too), logs it, and
// returns errRevoked; an error that is not errRevoked when the wipe
// failed.
func (a *agent) wipe(cause error, stopStatus func()) error {
	a.co.Close()
	if stopStatus != nil {
		stopStatus()
	}
	// The marker first: an agent started again (a reboot, the unit is
	// enabled) must neither sync what a failed wipe left nor begin a new
	// database, which would register as a new device, one the revocation
	// does not cover, and download the tenant's rows again.
	if err := os.WriteFile(revokedMarker(a.cfg.db), []byte(cause.Error()+"\n"), 0o600); err != nil {
		a.log.Error("device revoked by the server: writing the marker failed", "marker", revokedMarker(a.cfg.db), "err", err.Error())
	}
	pending, _ := a.db.Pending(context.Background())
	if err := a.db.Wipe(context.Background()); err != nil {
		// Not errRevoked: restarted, the agent meets the revocation
		// again and wipes again.
		return fmt.Errorf("device revoked by the server; wiping the database failed: %w", err)
	}
	a.log.Error("device revoked by the server: database wiped, exiting", "db", a.cfg.db, "readings_lost", pending,
		"err", cause.Error(), "exit_status", exitRevoked)
	return errRevoked
}

// revokedMarker is the file the agent leaves next to its database db when
// the server revoked the device: while it exists, the agent does not
// sync. The operator removes it (and the database) to provision the
// device again.
func revokedMarker(db string) string { return db + ".revoked" }

// stillRevoked is what the agent does at its start when the marker of a
// revocation exists: it wipes whatever the database holds (a wipe may
// have failed) and returns errRevoked, without syncing. It returns nil
// when there is no marker.
func stillRevoked(ctx context.Context, path string, reg *entity.Registry, log *slog.Logger) error {
	marker := revokedMarker(path)
	cause, err := os.ReadFile(marker)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("the marker of a revocation %s: %w", marker, err)
	}
	db, err := localdb.Open(ctx, path, reg)
	if err != nil {
		return fmt.Errorf("device revoked earlier (%s); open %s to wipe it: %w", marker, path, err)
	}
	if err := db.Wipe(ctx); err != nil {
		return fmt.Errorf("device revoked earlier (%s); wiping the database failed: %w", marker, err)
	}
	log.Error("device revoked by the server earlier: database wiped, not syncing; remove the marker and the database to provision the device again",
		"db", path, "marker", marker, "revoked", string(bytes.TrimSpace(cause)), "exit_status", exitRevoked)
	return errRevoked
}
