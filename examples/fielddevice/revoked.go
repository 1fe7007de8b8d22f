package main

import (
	"context"
	"errors"
	"fmt"
)

// exitRevoked is the agent's exit status once the server revoked the
// device and the agent wiped its database. The systemd unit does not
// restart it (RestartPreventExitStatus): started again, it would begin a
// new, empty database and register as a new device.
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
