package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
		return "", fmt.Errorf("missing or malformed %s header %q: want a device id, %s: %w", wire.HeaderDevice, clip(d), wire.IDFormat, wire.ErrBadRequest)
	}
	return d, nil
}

// keyHashOf returns the SHA-256, in hex, of the request's device key
// (wire.HeaderDeviceKey), or wire.ErrDeviceKey when it has none.
func keyHashOf(r *http.Request, device string) (string, error) {
	key := r.Header.Get(wire.HeaderDeviceKey)
	if !wire.ValidDeviceKey(key) {
		return "", fmt.Errorf("the request names device %s without its key (a %s header of 32 to 128 letters, digits, - and _): %w",
			device, wire.HeaderDeviceKey, wire.ErrDeviceKey)
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:]), nil
}

// device returns the device the request names, proven by its key: a
// member's token acts only through the devices whose keys it holds.
func (s *Server) device(ctx context.Context, p Principal, r *http.Request) (string, error) {
	device, err := deviceOf(r)
	if err != nil {
		return "", err
	}
	hash, err := keyHashOf(r, device)
	if err != nil {
		return "", err
	}
	if err := s.store.CheckDevice(ctx, p, device, hash); err != nil {
		return "", err
	}
	noted(ctx).device = device
	return device, nil
}

// optionalDevice is device for requests that may name a device (pulls,
// snapshots): "" when the request names none.
func (s *Server) optionalDevice(ctx context.Context, p Principal, r *http.Request) (string, error) {
	if r.Header.Get(wire.HeaderDevice) == "" {
		return "", nil
	}
	return s.device(ctx, p, r)
}

// registerDevice registers the calling device in the principal's tenant,
// with its schema, which must not contradict the server's (wire.Device).
// The first registration of a device records its key; registering it
// again takes the same key.
func (s *Server) registerDevice(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error) {
	var d wire.Device
	if err := s.decode(w, r, &d); err != nil {
		return nil, err
	}
	if !deviceRE.MatchString(d.Device) {
		return nil, fmt.Errorf("malformed device id %q: want %s: %w", clip(d.Device), wire.IDFormat, wire.ErrBadRequest)
	}
	if d.Device == WriteDevice || d.Device == ExternalDevice {
		// WriteDevice taken would block the server's writes; a device
		// registered as ExternalDevice would pass its commits off as
		// captured external writes.
		return nil, fmt.Errorf("device id %s is reserved for the server's own writes: %w", d.Device, wire.ErrBadRequest)
	}
	if h := r.Header.Get(wire.HeaderDevice); h != "" && h != d.Device {
		return nil, fmt.Errorf("the %s header names device %q and the body %s: %w", wire.HeaderDevice, clip(h), d.Device, wire.ErrBadRequest)
	}
	if d.Tenant != "" && d.Tenant != p.Tenant {
		return nil, fmt.Errorf("the device's database belongs to tenant %q and the credentials are for %q: %w", clip(d.Tenant), p.Tenant, wire.ErrForbidden)
	}
	reg := Registration{Device: d.Device}
	var err error
	if reg.KeyHash, err = keyHashOf(r, d.Device); err != nil {
		return nil, err
	}
	if d.Schema != nil {
		if reg.Schema, err = deviceSchema(s.store.Schema(), *d.Schema); err != nil {
			return nil, err
		}
	}
	if err := s.store.RegisterDevice(ctx, p, reg, s.opts.Limits); err != nil {
		return nil, err
	}
	noted(ctx).device = d.Device
	return wire.Device{Device: d.Device, Tenant: p.Tenant, User: p.User}, nil
}
