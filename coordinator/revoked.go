package coordinator

import (
	"errors"

	"github.com/tethersync/tether/wire"
)

// ErrRevoked is returned by SyncNow, Run and Live when the server refuses
// the device because its operator revoked it (a lost or stolen device):
// the server answered 403 "device_revoked". It is wire.ErrDeviceRevoked
// itself, so errors.Is matches either. It is permanent: Run and Live stop
// and return it rather than retry. A revoked device should stop, and
// usually wipe its database (localdb.DB.Wipe): what it had not pushed
// will never be accepted. When the operator reinstates the device it may
// sync again from the same database.
var ErrRevoked = wire.ErrDeviceRevoked

// revoked reports whether err is the server's refusal of a revoked
// device.
func revoked(err error) bool { return errors.Is(err, ErrRevoked) }
