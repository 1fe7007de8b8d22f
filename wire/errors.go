package wire

import (
	"errors"
	"net/http"
)

// Sentinel errors for the conditions callers branch on. The server maps each
// to one HTTP status and code, and the client maps them back, so errors.Is
// works the same on both sides.
var (
	ErrBadRequest   = errors.New("bad request")
	ErrUnauthorized = errors.New("unauthorized")
	ErrForbidden    = errors.New("forbidden")
	ErrNotFound     = errors.New("not found")
	ErrConflict     = errors.New("conflict")
	ErrTooLarge     = errors.New("request too large")
	// ErrSessionFull is a batch that would take its push session past the
	// server's bounds: commit the session, and go on in a new one.
	ErrSessionFull = errors.New("push session full")
	// ErrSchemaMismatch is a device whose schema contradicts the server's:
	// a table or column the server does not have, or another kind.
	ErrSchemaMismatch = errors.New("schema mismatch")
	// ErrHistoryPurged is a pull from a cursor older than the server's
	// history: deletions after it may have been purged. The device must
	// rebuild from a snapshot (the coordinator does, on its own).
	ErrHistoryPurged = errors.New("history purged")
	// ErrDeviceUnknown is a device the server has no registration of in
	// the credentials' tenant (never registered, or the server's database
	// was replaced): register it (POST /v1/devices) and try again. The
	// coordinator does, on its own.
	ErrDeviceUnknown = errors.New("device not registered")
	// ErrDeviceKey is a request that names a device without proving it is
	// that device: it carries no HeaderDeviceKey, or not the key the
	// device registered with. Only the device's own database holds its
	// key; a member's token acts only through the devices it holds.
	ErrDeviceKey = errors.New("device key refused")
	// ErrDeviceLimit is the registration of a new device by a user who
	// holds the server's limit of registered devices already: devices
	// unseen for a while are forgotten by the server, which frees room.
	ErrDeviceLimit = errors.New("too many devices")
	// ErrDeviceRevoked is a request naming a device the server's operator
	// revoked (a lost or stolen device): every request of it is refused,
	// until the operator reinstates it. A device that gets it stops
	// syncing, and may wipe its database (the coordinator returns
	// coordinator.ErrRevoked, which is this error).
	ErrDeviceRevoked = errors.New("device revoked")
	// ErrRefused is wrapped, by the client, in every error answer carrying
	// one of this API's codes with a 4xx status: the server refused the
	// request whole, and applied none of it. Network errors, cut answers
	// and 5xx answers leave it unknown whether a request was applied.
	ErrRefused = errors.New("refused by the server")
	// ErrUnsupportedMedia is a body that is not application/json.
	ErrUnsupportedMedia = errors.New("unsupported media type")
	ErrRateLimited      = errors.New("rate limited")
	ErrInternal         = errors.New("internal server error")
	ErrUnavailable      = errors.New("service unavailable")
)

// codes is the one table from error to code and HTTP status.
var codes = []struct {
	err    error
	code   string
	status int
}{
	{ErrBadRequest, "bad_request", http.StatusBadRequest},
	{ErrUnauthorized, "unauthorized", http.StatusUnauthorized},
	{ErrForbidden, "forbidden", http.StatusForbidden},
	{ErrNotFound, "not_found", http.StatusNotFound},
	{ErrConflict, "conflict", http.StatusConflict},
	{ErrSchemaMismatch, "schema_mismatch", http.StatusConflict},
	{ErrDeviceUnknown, "unknown_device", http.StatusForbidden},
	{ErrDeviceKey, "device_key", http.StatusForbidden},
	{ErrDeviceRevoked, "device_revoked", http.StatusForbidden},
	{ErrDeviceLimit, "device_limit", http.StatusConflict},
	{ErrHistoryPurged, "history_purged", http.StatusGone},
	{ErrTooLarge, "too_large", http.StatusRequestEntityTooLarge},
	{ErrSessionFull, "session_full", http.StatusRequestEntityTooLarge},
	{ErrUnsupportedMedia, "unsupported_media_type", http.StatusUnsupportedMediaType},
	{ErrRateLimited, "rate_limited", http.StatusTooManyRequests},
	{ErrUnavailable, "unavailable", http.StatusServiceUnavailable},
	{ErrInternal, "internal", http.StatusInternalServerError},
}

// Code returns the error code and HTTP status for err: those of the first
// sentinel it wraps, else "internal" and 500.
func Code(err error) (code string, status int) {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code, c.status
		}
	}
	return "internal", http.StatusInternalServerError
}

// ErrorFor returns the sentinel for an error code or, when the code is
// unknown, for an HTTP status. It returns nil for statuses below 400.
func ErrorFor(code string, status int) error {
	for _, c := range codes {
		if c.code == code {
			return c.err
		}
	}
	for _, c := range codes {
		if c.status == status {
			return c.err
		}
	}
	switch {
	case status >= 500:
		return ErrInternal
	case status >= 400:
		return ErrBadRequest
	}
	return nil
}
