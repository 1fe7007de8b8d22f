// Command fielddevice is an unattended tether agent for a field device: it
// records a sensor reading at a fixed interval into a local SQLite file and
// syncs it with the server in the background, for months, through flaky
// networks, server restarts, reboots and long offline periods.
//
// Configuration comes from flags, each with an environment variable as its
// default (see -help), so the same binary runs from a shell or from the
// systemd unit beside this file (tether-fielddevice.service):
//
//	TETHER_SERVER=https://sync.example.com TETHER_TOKEN_FILE=/etc/tether/token \
//	    go run ./examples/fielddevice -db /var/lib/tether/device.db
//
// It logs JSON lines (log/slog) on standard error, serves its status on a
// loopback address (GET /status: pending rows, last success, last error),
// and on SIGTERM or SIGINT stops recording, lets the sync under way reach
// its next safe point (the batch on the wire acknowledged), and exits; the
// next start resumes where it stopped. With -token-file the token is read
// again from the file each time the server refuses it, so it can be
// rotated without a restart.
//
// When the server's operator revokes the device (a lost or stolen one:
// tether-admin revoke), the agent wipes its database (localdb.DB.Wipe),
// logs "device revoked by the server: database wiped, exiting" and exits
// with status 3, which the systemd unit does not restart.
package main
