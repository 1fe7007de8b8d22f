package coordinator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// register registers the device, and binds the database to the tenant,
// unless it did with the same schema before (or again, with force, after
// the server said it does not know the device). The client names the
// database's tenant in every request, so that the server refuses
// credentials of another tenant without a registration first.
func (c *Coordinator) register(ctx context.Context, force bool) error {
	tenant, err := c.store.Tenant(ctx)
	if err != nil {
		return err
	}
	c.api.SetTenant(tenant)
	schema := c.store.Registry().Schema()
	js, err := json.Marshal(schema)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	sum := sha256.Sum256(js)
	mark := hex.EncodeToString(sum[:])
	if !force && tenant != "" {
		if done, err := c.store.Registration(ctx); err != nil || done == mark {
			return err
		}
	}
	dev, err := c.api.RegisterDevice(ctx, c.db.DeviceID(), tenant, &schema)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	// Before any data moves, the database must belong to this tenant.
	if err := c.store.BindTenant(ctx, dev.Tenant); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	c.api.SetTenant(dev.Tenant)
	return c.store.SetRegistration(ctx, mark)
}
