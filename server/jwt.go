package server

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
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
// HS256 (a shared secret), RS256 (an RSA key pair; the server holds the
// public key), or a key of an identity provider's key set (JWKS). Only
// the algorithms of the key configured are accepted (HS256 for Secret,
// RS256 for PublicKey, the asymmetric algorithms of the key a JWKS token
// names), so a token cannot choose how it is checked. Tokens must carry
// an expiry.
type JWT struct {
	// Secret is the HS256 key. Set exactly one of Secret, PublicKey and
	// JWKS.
	Secret []byte
	// PublicKey verifies RS256 signatures.
	PublicKey *rsa.PublicKey
	// JWKS verifies RS256, ES256, EdDSA (and the other asymmetric)
	// signatures with the keys of a provider's key set. Close closes it.
	JWKS *JWKS
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
	var methods []string
	var keyfunc jwt.Keyfunc
	switch {
	case j.PublicKey != nil && j.Secret == nil && j.JWKS == nil:
		methods, keyfunc = []string{jwt.SigningMethodRS256.Alg()}, func(*jwt.Token) (any, error) { return j.PublicKey, nil }
	case j.Secret != nil && j.PublicKey == nil && j.JWKS == nil:
		methods, keyfunc = []string{jwt.SigningMethodHS256.Alg()}, func(*jwt.Token) (any, error) { return j.Secret, nil }
	case j.JWKS != nil && j.Secret == nil && j.PublicKey == nil:
		ctx, cancel := j.JWKS.context(r.Context())
		defer cancel()
		methods, keyfunc = jwksMethods, j.JWKS.keyfunc(ctx)
	default:
		return Principal{}, fmt.Errorf("server misconfigured: JWT needs exactly one of Secret, PublicKey and JWKS: %w", wire.ErrInternal)
	}
	leeway := j.Leeway
	if leeway <= 0 {
		leeway = DefaultJWTLeeway
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithExpirationRequired(), jwt.WithLeeway(leeway), jwt.WithIssuedAt()}
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
	if _, err := jwt.ParseWithClaims(tok, claims, keyfunc, opts...); err != nil {
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

// Close closes the JWKS, if any: its key set is no longer fetched. It
// returns nil.
func (j *JWT) Close() error {
	if j.JWKS != nil {
		return j.JWKS.Close()
	}
	return nil
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

// Close closes each authenticator that is an io.Closer (a JWT with a
// JWKS), and returns their errors joined.
func (as Authenticators) Close() error {
	var errs []error
	for _, a := range as {
		if c, ok := a.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}
