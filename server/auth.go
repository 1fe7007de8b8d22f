package server

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tethersync/tether/wire"
)

// Principal is an authenticated identity: the tenant whose rows it may read
// and write, and the user recorded as ModifiedBy on its changes.
type Principal struct {
	Tenant string `json:"tenant"`
	User   string `json:"user"`
	// Expires is when the credentials expire, for an Authenticator that
	// knows (JWT: the "exp" claim); zero means never. An event stream
	// opened with the credentials ends then, and the client reconnects
	// with new ones. It is not part of the JSON form (a tokens file).
	Expires time.Time `json:"-"`
	// Claims are the claims of the principal's token, for an
	// Authenticator that has them (JWT), as encoding/json decodes them;
	// ClaimKeys reads scope keys from them. Not part of the JSON form.
	Claims map[string]any `json:"-"`
}

// Authenticator maps a request to a Principal. It returns an error wrapping
// wire.ErrUnauthorized when the request carries no valid credentials.
// Implementations must be safe for concurrent use.
type Authenticator interface {
	Authenticate(r *http.Request) (Principal, error)
}

// StaticTokens is an Authenticator over a fixed map of bearer tokens.
type StaticTokens map[string]Principal

// Authenticate implements Authenticator. It compares tokens in constant time.
func (s StaticTokens) Authenticate(r *http.Request) (Principal, error) {
	tok, err := BearerToken(r)
	if err != nil {
		return Principal{}, err
	}
	for k, p := range s {
		if subtle.ConstantTimeCompare([]byte(k), []byte(tok)) == 1 {
			return p, nil
		}
	}
	return Principal{}, fmt.Errorf("unknown token: %w", wire.ErrUnauthorized)
}

// BearerToken returns the token of the request's "Authorization: Bearer"
// header, or an error wrapping wire.ErrUnauthorized.
func BearerToken(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", fmt.Errorf("missing bearer token: %w", wire.ErrUnauthorized)
	}
	return strings.TrimSpace(tok), nil
}

// authenticate finds the request's principal and applies the rate limit;
// the error is ready for fail.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (Principal, error) {
	if s.opts.Auth == nil {
		return Principal{}, fmt.Errorf("server has no authenticator configured: %w", wire.ErrUnauthorized)
	}
	// Guessing tokens: an address whose authentications failed too often
	// is refused before its token is looked at.
	addr := clientAddr(r)
	if wait := s.authFails.empty(addr); wait > 0 {
		secs := int((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		return Principal{}, fmt.Errorf("too many failed authentications from this address; retry in %ds: %w", secs, wire.ErrRateLimited)
	}
	p, err := s.opts.Auth.Authenticate(r)
	if err != nil {
		if !errors.Is(err, wire.ErrInternal) {
			s.authFails.take(addr)
		}
		if !errors.Is(err, wire.ErrUnauthorized) && !errors.Is(err, wire.ErrInternal) {
			err = fmt.Errorf("%v: %w", err, wire.ErrUnauthorized)
		}
		return Principal{}, err
	}
	if p.Tenant == "" {
		return Principal{}, fmt.Errorf("credentials name no tenant: %w", wire.ErrForbidden)
	}
	noted(r.Context()).tenant = p.Tenant
	if t := r.Header.Get(wire.HeaderTenant); t != "" && t != p.Tenant {
		return Principal{}, fmt.Errorf("the device's database belongs to tenant %q and the credentials are for %q: %w", clip(t), p.Tenant, wire.ErrForbidden)
	}
	if wait := s.limiters.wait(r); wait > 0 {
		secs := int((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		return Principal{}, fmt.Errorf("more than %v requests a second with this token; retry in %ds: %w", s.opts.RateLimit, secs, wire.ErrRateLimited)
	}
	return p, nil
}

// clientAddr is the address of r's client: the connection's host, not a
// forwarded-for header, which any client can write.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
