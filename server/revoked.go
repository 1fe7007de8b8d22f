package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tethersync/tether/wire"
)

// recheckEvery bounds how often an event stream checks its device again
// on events: at most once a second, and at every heartbeat. A device that
// hears an event pulls, and its pull is checked anyway.
const recheckEvery = time.Second

// deviceWatch checks, now and then, that the device an event stream names
// may still sync: a device revoked (SetDeviceRevoked of the SQL stores)
// while its stream is open has the stream ended with the refusal.
type deviceWatch struct {
	s       *Server
	p       Principal
	device  string // "" for a stream that names none: nothing to check
	hash    string
	checked time.Time
	err     error // the refusal, once refused reported it
}

// watchDevice returns the watch of the device a stream names, which
// optionalDevice accepted.
func (s *Server) watchDevice(p Principal, r *http.Request, device string) *deviceWatch {
	d := &deviceWatch{s: s, p: p, device: device, checked: time.Now()}
	if device != "" {
		d.hash, _ = keyHashOf(r, device) // accepted already
	}
	return d
}

// refused checks the device again, at a heartbeat or, at most every
// recheckEvery, at an event, and reports whether the server now refuses
// it (revoked, forgotten or registered under another key). A failure of
// the store does not end the stream.
func (d *deviceWatch) refused(ctx context.Context, heartbeat bool) bool {
	if d.device == "" || (!heartbeat && time.Since(d.checked) < recheckEvery) {
		return false
	}
	d.checked = time.Now()
	err := d.s.store.CheckDevice(ctx, d.p, d.device, d.hash)
	if errors.Is(err, wire.ErrDeviceRevoked) || errors.Is(err, wire.ErrDeviceUnknown) || errors.Is(err, wire.ErrDeviceKey) {
		d.err = err
		return true
	}
	return false
}

// end writes the refusal as the stream's last event, "error", whose data
// is the wire.ErrorBody a refused request gets (with the status's code,
// such as "device_revoked"): the headers are sent already, so the status
// cannot be 403.
func (d *deviceWatch) end(w http.ResponseWriter) {
	code, _ := wire.Code(d.err)
	data, _ := json.Marshal(wire.ErrorBody{Error: wire.ErrorDetail{Code: code, Message: clipTo(d.err.Error(), maxMessageBytes)}})
	fmt.Fprintf(w, "event: error\ndata: %s\n\n", data)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}
