package server

import (
	"context"
	"fmt"
	"net/http"
	"regexp"

	"github.com/tethersync/tether/wire"
)

// deviceRE is a device or session id: 1 to 64 letters, digits and dashes.
var deviceRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

// deviceOf returns the device id of the request's wire.HeaderDevice.
func deviceOf(r *http.Request) (string, error) {
	d := r.Header.Get(wire.HeaderDevice)
	if !deviceRE.MatchString(d) {
		return "", fmt.Errorf("missing or malformed %s header: %w", wire.HeaderDevice, wire.ErrBadRequest)
	}
	return d, nil
}

// registerDevice registers the calling device in the principal's tenant,
// with its schema, which must not contradict the server's (wire.Device).
func (s *Server) registerDevice(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error) {
	var d wire.Device
	if err := s.decode(w, r, &d); err != nil {
		return nil, err
	}
	if !deviceRE.MatchString(d.Device) {
		return nil, fmt.Errorf("malformed device id %q: %w", d.Device, wire.ErrBadRequest)
	}
	if d.Tenant != "" && d.Tenant != p.Tenant {
		return nil, fmt.Errorf("the device's database belongs to tenant %q and the credentials are for %q: %w", d.Tenant, p.Tenant, wire.ErrForbidden)
	}
	if d.Schema != nil {
		if err := checkDeviceSchema(s.store.Schema(), *d.Schema); err != nil {
			return nil, err
		}
	}
	if err := s.store.RegisterDevice(ctx, p, d.Device, d.Schema); err != nil {
		return nil, err
	}
	return wire.Device{Device: d.Device, Tenant: p.Tenant, User: p.User}, nil
}
