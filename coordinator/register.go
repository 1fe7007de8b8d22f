package coordinator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tethersync/tether/wire"
)

// register registers the device, and binds the database to the tenant,
// unless it did with the same schema and device key before (or again, with
// force, after the server said it does not know the device). The client
// names the database's tenant in every request, so that the server refuses
// credentials of another tenant without a registration first.
func (c *Coordinator) register(ctx context.Context, force bool) error {
	tenant, done, err := c.store.Registered(ctx)
	if err != nil {
		return err
	}
	c.api.SetTenant(tenant)
	mark, err := c.registrationMark()
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	if !force && tenant != "" && done == mark {
		return nil
	}
	schema := c.store.Registry().Schema()
	dev, err := c.api.RegisterDevice(ctx, c.db.DeviceID(), tenant, &schema)
	if err != nil {
		return fmt.Errorf("sync: %w", explainDevice(c.db.DeviceID(), err))
	}
	// Before any data moves, the database must belong to this tenant.
	if err := c.store.BindTenant(ctx, dev.Tenant); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	c.api.SetTenant(dev.Tenant)
	return c.store.SetRegistration(ctx, mark)
}

// registrationMark returns the mark of what the device registers: a hash
// of its schema and key, both fixed for the database's life, so computed
// once. The mark covers the key too: a device registered before it had a
// key registers once more, which records its key with the server.
func (c *Coordinator) registrationMark() (string, error) {
	c.markOnce.Do(func() {
		js, err := json.Marshal(c.store.Registry().Schema())
		if err != nil {
			c.markErr = err
			return
		}
		sum := sha256.Sum256(append(js, "\n"+c.store.DeviceKey()...))
		c.mark = hex.EncodeToString(sum[:])
	})
	return c.mark, c.markErr
}

// explainDevice returns err, the error of a request naming device, with
// what it means for the app when the server refused the device's key
// (wire.ErrDeviceKey) or its registration past the user's limit
// (wire.ErrDeviceLimit). Both are permanent: retrying does not help.
func explainDevice(device string, err error) error {
	switch {
	case errors.Is(err, wire.ErrDeviceKey):
		return fmt.Errorf("the server holds device %s's registration under another key: "+
			"another database with this device id registered first (this database replaced the device's, "+
			"or both are copies of one made before device keys), and this one cannot sync as that device; "+
			"sync from a new database: %w", device, err)
	case errors.Is(err, wire.ErrDeviceLimit):
		return fmt.Errorf("the server refuses to register device %s: the user has too many devices in use "+
			"(devices unseen for a while, 30 days by default, no longer count): %w", device, err)
	}
	return err
}
