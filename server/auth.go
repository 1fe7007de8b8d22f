package server

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"

	"github.com/tethersync/tether/wire"
)

// Principal is an authenticated identity: the tenant whose rows it may read
// and write, and the user recorded as ModifiedBy on its changes.
type Principal struct {
	Tenant string `json:"tenant"`
	User   string `json:"user"`
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

type principalKey struct{}

// principalFrom returns the principal the server authenticated for ctx.
func principalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
