package admin

import (
	"context"
	"fmt"
)

// revokeOut is the JSON of the revoke and reinstate commands.
type revokeOut struct {
	Tenant  string `json:"tenant"`
	Device  string `json:"device"`
	Revoked bool   `json:"revoked"`
}

// runRevoke revokes a device.
func runRevoke(ctx context.Context, e *env, args []string) error {
	return setRevoked(ctx, e, "revoke", args, true)
}

// runReinstate reinstates a revoked device.
func runReinstate(ctx context.Context, e *env, args []string) error {
	return setRevoked(ctx, e, "reinstate", args, false)
}

// setRevoked is the revoke (revoked true) or reinstate command.
func setRevoked(ctx context.Context, e *env, name string, args []string, revoked bool) error {
	f := e.newFlags(name, true)
	var device string
	f.StringVar(&device, "device", "", "the device id, as devices lists it (required)")
	if err := f.parse(args, "db", "tenant", "device"); err != nil {
		return err
	}
	s, err := e.open(ctx, f)
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.Latest(ctx, f.tenant); err != nil {
		return err
	}
	if err := s.SetDeviceRevoked(ctx, f.tenant, device, revoked); err != nil {
		return err
	}
	if f.json {
		return e.printJSON(revokeOut{f.tenant, device, revoked})
	}
	if revoked {
		fmt.Fprintf(e.Stdout, "device %s of tenant %s revoked: its requests are refused (403 device_revoked) until it is reinstated; its open push sessions were discarded\n", device, f.tenant)
		return nil
	}
	fmt.Fprintf(e.Stdout, "device %s of tenant %s reinstated: it syncs again\n", device, f.tenant)
	return nil
}
