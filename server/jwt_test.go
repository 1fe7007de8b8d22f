package server_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

func TestJWT(t *testing.T) {
	secret := []byte("a shared secret of reasonable length")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&rsaKey.PublicKey))})
	now := time.Now()
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": "https://id.example.com", "aud": "tether", "sub": "ada", "org": "acme",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	hs := func(c jwt.MapClaims) string {
		return must(jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret))
	}
	rs := func(key *rsa.PrivateKey, c jwt.MapClaims) string {
		return must(jwt.NewWithClaims(jwt.SigningMethodRS256, c).SignedString(key))
	}
	hsAuth := &server.JWT{Secret: secret, Issuer: "https://id.example.com", Audience: "tether", TenantClaim: "org"}
	rsAuth := &server.JWT{PublicKey: &rsaKey.PublicKey, Issuer: "https://id.example.com", Audience: "tether", TenantClaim: "org"}
	tampered := hs(claims(nil))
	tampered = tampered[:len(tampered)-2] + map[bool]string{true: "AA", false: "BB"}[tampered[len(tampered)-2:] != "AA"]
	none := must(jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType))
	confused := must(jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil)).SignedString(pubPEM))

	for _, tt := range []struct {
		name  string
		auth  server.Authenticator
		token string
		ok    bool
	}{
		{"HS256", hsAuth, hs(claims(nil)), true},
		{"RS256", rsAuth, rs(rsaKey, claims(nil)), true},
		{"expired", hsAuth, hs(claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() })), false},
		{"no expiry", hsAuth, hs(claims(func(c jwt.MapClaims) { delete(c, "exp") })), false},
		{"not yet valid", hsAuth, hs(claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() })), false},
		{"tampered signature", hsAuth, tampered, false},
		{"wrong secret", hsAuth, must(jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil)).SignedString([]byte("guess"))), false},
		{"wrong issuer", hsAuth, hs(claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.example.com" })), false},
		{"wrong audience", hsAuth, hs(claims(func(c jwt.MapClaims) { c["aud"] = "billing" })), false},
		{"no tenant claim", hsAuth, hs(claims(func(c jwt.MapClaims) { delete(c, "org") })), false},
		{"alg none", hsAuth, none, false},
		{"RS256 key of another issuer", rsAuth, rs(otherKey, claims(nil)), false},
		{"HS256 signed with the RS256 public key", rsAuth, confused, false},
		{"RS256 token to an HS256 server", hsAuth, rs(rsaKey, claims(nil)), false},
		{"static token falls through to JWT", server.Authenticators{testkit.Tokens, hsAuth}, hs(claims(nil)), true},
		{"static token first", server.Authenticators{testkit.Tokens, hsAuth}, "token-ada", true},
		{"neither", server.Authenticators{testkit.Tokens, hsAuth}, "token-nobody", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg := testkit.Registry(t)
			srv := testkit.NewServer(t, reg, server.Options{Auth: tt.auth})
			st, code, body := call(t, "POST", srv.URL+"/v1/devices", tt.token, `{"device":"`+device+`"}`)
			if tt.ok && st != 200 {
				t.Fatalf("%d %s %s, want 200", st, code, body)
			}
			if !tt.ok && (st != 401 || code != "unauthorized") {
				t.Fatalf("%d %s %s, want 401 unauthorized", st, code, body)
			}
		})
	}

	t.Run("claims become the principal", func(t *testing.T) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+hs(claims(nil)))
		p, err := hsAuth.Authenticate(r)
		want := server.Principal{Tenant: "acme", User: "ada", Expires: time.Unix(now.Add(time.Hour).Unix(), 0)}
		if err != nil || p.Tenant != want.Tenant || p.User != want.User || !p.Expires.Equal(want.Expires) {
			t.Errorf("Authenticate = %+v, %v", p, err)
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// A token's times are checked against JWT.Now.
func TestJWTClock(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	clock := testkit.NewClock()
	auth := &server.JWT{Secret: secret, Now: clock.Now}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "ada", "tenant": "acme",
		"exp": clock.Now().Add(time.Hour).Unix()}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	if _, err := auth.Authenticate(r); err != nil {
		t.Fatalf("a token within its time: %v", err)
	}
	clock.Advance(2 * time.Hour)
	if _, err := auth.Authenticate(r); !errors.Is(err, wire.ErrUnauthorized) {
		t.Errorf("a token past its expiry by JWT.Now: %v, want ErrUnauthorized", err)
	}
}
