package server

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tethersync/tether/wire"
)

// Defaults of JWT.
const (
	DefaultTenantClaim = "tenant"
	DefaultUserClaim   = "sub"
	DefaultJWTLeeway   = 30 * time.Second
)

// JWT authenticates bearer tokens that are JSON Web Tokens signed with
// HS256 (a shared secret) or RS256 (an RSA key pair; the server holds the
// public key). Only the one algorithm configured is accepted, so a token
// cannot choose how it is checked. Tokens must carry an expiry.
type JWT struct {
	// Secret is the HS256 key. Set Secret or PublicKey, not both.
	Secret []byte
	// PublicKey verifies RS256 signatures.
	PublicKey *rsa.PublicKey
	// Issuer, when set, must equal the "iss" claim.
	Issuer string
	// Audience, when set, must be in the "aud" claim.
	Audience string
	// TenantClaim names the claim holding the tenant. Default
	// DefaultTenantClaim.
	TenantClaim string
	// UserClaim names the claim holding the user. Default
	// DefaultUserClaim.
	UserClaim string
	// Leeway is the clock skew allowed when checking "exp", "nbf" and
	// "iat". Default DefaultJWTLeeway.
	Leeway time.Duration
	// Now is the clock the token's times are checked against. Default
	// time.Now.
	Now func() time.Time
}

// Authenticate implements Authenticator. The principal's Expires is the
// token's "exp" claim (the token is accepted up to Leeway past it).
func (j *JWT) Authenticate(r *http.Request) (Principal, error) {
	tok, err := BearerToken(r)
	if err != nil {
		return Principal{}, err
	}
	var method string
	var key any
	switch {
	case j.PublicKey != nil && j.Secret == nil:
		method, key = jwt.SigningMethodRS256.Alg(), j.PublicKey
	case j.Secret != nil && j.PublicKey == nil:
		method, key = jwt.SigningMethodHS256.Alg(), j.Secret
	default:
		return Principal{}, fmt.Errorf("server misconfigured: JWT needs exactly one of Secret and PublicKey: %w", wire.ErrInternal)
	}
	leeway := j.Leeway
	if leeway <= 0 {
		leeway = DefaultJWTLeeway
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods([]string{method}), jwt.WithExpirationRequired(), jwt.WithLeeway(leeway), jwt.WithIssuedAt()}
	if j.Now != nil {
		opts = append(opts, jwt.WithTimeFunc(j.Now))
	}
	if j.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(j.Issuer))
	}
	if j.Audience != "" {
		opts = append(opts, jwt.WithAudience(j.Audience))
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return key, nil }, opts...); err != nil {
		return Principal{}, fmt.Errorf("invalid token: %v: %w", err, wire.ErrUnauthorized)
	}
	exp, err := claims.GetExpirationTime() // required: the parser checked it
	if err != nil || exp == nil {
		return Principal{}, fmt.Errorf("invalid token: no valid \"exp\" claim: %w", wire.ErrUnauthorized)
	}
	tenantClaim, userClaim := j.TenantClaim, j.UserClaim
	if tenantClaim == "" {
		tenantClaim = DefaultTenantClaim
	}
	if userClaim == "" {
		userClaim = DefaultUserClaim
	}
	tenant, _ := claims[tenantClaim].(string)
	user, _ := claims[userClaim].(string)
	if tenant == "" || user == "" {
		return Principal{}, fmt.Errorf("token lacks a %q or %q claim: %w", tenantClaim, userClaim, wire.ErrUnauthorized)
	}
	return Principal{Tenant: tenant, User: user, Expires: exp.Time, Claims: map[string]any(claims)}, nil
}

// Authenticators tries each authenticator in turn and returns the first
// principal found, such as StaticTokens for service accounts and JWT for
// people.
type Authenticators []Authenticator

// Authenticate implements Authenticator.
func (as Authenticators) Authenticate(r *http.Request) (Principal, error) {
	var errs []error
	for _, a := range as {
		p, err := a.Authenticate(r)
		if err == nil {
			return p, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return Principal{}, fmt.Errorf("no authenticator configured: %w", wire.ErrUnauthorized)
	}
	return Principal{}, errors.Join(errs...)
}
