package server_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// provider is an identity provider's key set endpoint on loopback: its
// keys can be added and removed while it runs, and it counts fetches.
type provider struct {
	*httptest.Server
	fetches atomic.Int64
	mu      sync.Mutex
	keys    map[string]crypto.PublicKey // by kid
	raw     []byte                      // when set, served instead
}

func newProvider(t *testing.T, signers ...signer) *provider {
	t.Helper()
	p := &provider{keys: map[string]crypto.PublicKey{}}
	for _, s := range signers {
		p.publish(s)
	}
	p.Server = httptest.NewServer(p)
	t.Cleanup(p.Close)
	return p
}

func (p *provider) publish(s signer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys[s.kid] = s.key.Public()
}

func (p *provider) remove(kid string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.keys, kid)
}

func (p *provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.fetches.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.raw != nil {
		w.Write(p.raw)
		return
	}
	set := jwkset.NewMemoryStorage()
	for kid, pub := range p.keys {
		jwk, err := jwkset.NewJWKFromKey(pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, USE: jwkset.UseSig}})
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		set.KeyWrite(r.Context(), jwk)
	}
	data, err := set.JSONPublic(r.Context())
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(data)
}

// signer is a private key and the kid its public key is published under.
type signer struct {
	kid    string
	method jwt.SigningMethod
	key    crypto.Signer
}

func newSigner(t *testing.T, kid string, method jwt.SigningMethod) signer {
	t.Helper()
	var key crypto.Signer
	var err error
	switch method {
	case jwt.SigningMethodRS256:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case jwt.SigningMethodES256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jwt.SigningMethodEdDSA:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("no key for %v", method.Alg())
	}
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: kid, method: method, key: key}
}

// sign returns a token of tenant acme and user ada signed by s, with
// extra claims.
func (s signer) sign(extra jwt.MapClaims) string {
	c := jwt.MapClaims{"sub": "ada", "tenant": "acme", "iss": "https://id.example.com", "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range extra {
		c[k] = v
	}
	tok := jwt.NewWithClaims(s.method, c)
	if s.kid != "" {
		tok.Header["kid"] = s.kid
	}
	return must(tok.SignedString(s.key))
}

func newJWKS(t *testing.T, url string, opts server.JWKSOptions) *server.JWKS {
	t.Helper()
	k, err := server.NewJWKS(t.Context(), url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// authenticate runs auth on a request bearing token.
func authenticate(auth server.Authenticator, token string) (server.Principal, error) {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	return auth.Authenticate(r)
}

// Tokens signed with RS256, ES256 and EdDSA keys of the set are accepted;
// a key the set never published, an algorithm the key does not allow, an
// HS256 token signed with a public key's bytes and an unsigned token are
// refused with 401 unauthorized.
func TestJWKSAlgorithms(t *testing.T) {
	rs := newSigner(t, "rs", jwt.SigningMethodRS256)
	es := newSigner(t, "es", jwt.SigningMethodES256)
	ed := newSigner(t, "ed", jwt.SigningMethodEdDSA)
	weak := signer{kid: "weak", method: jwt.SigningMethodRS256, key: must(rsa.GenerateKey(rand.Reader, 1024))}
	p := newProvider(t, rs, es, ed, weak)
	auth := &server.JWT{JWKS: newJWKS(t, p.URL, server.JWKSOptions{}), Issuer: "https://id.example.com"}
	srv := testkit.NewServer(t, testkit.Registry(t), server.Options{Auth: auth})

	stranger := newSigner(t, "stranger", jwt.SigningMethodES256)
	impostor := newSigner(t, "es", jwt.SigningMethodES256) // a published kid, another key
	esWithRSAKid := es
	esWithRSAKid.kid = "rs"
	noKid := ed
	noKid.kid = ""
	rsPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(rs.key.Public()))})
	confused := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "ada", "tenant": "acme", "exp": time.Now().Add(time.Hour).Unix()})
	confused.Header["kid"] = "rs"
	none := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "ada", "tenant": "acme", "exp": time.Now().Add(time.Hour).Unix()})
	none.Header["kid"] = "rs"

	for _, tt := range []struct {
		name  string
		token string
		ok    bool
	}{
		{"RS256", rs.sign(nil), true},
		{"ES256", es.sign(nil), true},
		{"EdDSA", ed.sign(nil), true},
		{"no kid: every key that allows the algorithm", noKid.sign(nil), true},
		{"a key never published", stranger.sign(nil), false},
		{"a published kid signed by another key", impostor.sign(nil), false},
		{"an RSA key of 1024 bits", weak.sign(nil), false},
		{"ES256 naming an RSA key", esWithRSAKid.sign(nil), false},
		{"HS256 signed with the RSA public key's bytes", must(confused.SignedString(rsPEM)), false},
		{"alg none", must(none.SignedString(jwt.UnsafeAllowNoneSignatureType)), false},
		{"wrong issuer", rs.sign(jwt.MapClaims{"iss": "https://evil.example.com"}), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, code, body := call(t, "POST", srv.URL+"/v1/devices", tt.token, `{"device":"`+device+`"}`)
			if tt.ok && st != 200 {
				t.Fatalf("%d %s %s, want 200", st, code, body)
			}
			if !tt.ok && (st != 401 || code != "unauthorized") {
				t.Fatalf("%d %s %s, want 401 unauthorized", st, code, body)
			}
		})
	}
}

// A key the provider adds is accepted without a restart; a key it removes
// is refused once the set was fetched again.
func TestJWKSRotation(t *testing.T) {
	a := newSigner(t, "a", jwt.SigningMethodRS256)
	b := newSigner(t, "b", jwt.SigningMethodES256)
	p := newProvider(t, a)
	// UnknownKID of a millisecond: every unknown kid fetches the set.
	auth := &server.JWT{JWKS: newJWKS(t, p.URL, server.JWKSOptions{UnknownKID: time.Millisecond})}
	if _, err := authenticate(auth, a.sign(nil)); err != nil {
		t.Fatalf("key a: %v", err)
	}
	if _, err := authenticate(auth, b.sign(nil)); !errors.Is(err, wire.ErrUnauthorized) {
		t.Fatalf("key b before it is published: %v, want ErrUnauthorized", err)
	}
	p.publish(b)
	if _, err := authenticate(auth, b.sign(nil)); err != nil {
		t.Fatalf("key b once published: %v", err)
	}
	p.remove("a")
	stranger := newSigner(t, "stranger", jwt.SigningMethodEdDSA)
	before := p.fetches.Load()
	if _, err := authenticate(auth, stranger.sign(nil)); !errors.Is(err, wire.ErrUnauthorized) {
		t.Fatalf("unknown kid: %v, want ErrUnauthorized", err)
	}
	if got := p.fetches.Load(); got <= before {
		t.Fatalf("fetches = %d after an unknown kid, want more than %d", got, before)
	}
	if _, err := authenticate(auth, a.sign(nil)); !errors.Is(err, wire.ErrUnauthorized) {
		t.Errorf("key a after its removal and a fetch: %v, want ErrUnauthorized", err)
	}
	if _, err := authenticate(auth, b.sign(nil)); err != nil {
		t.Errorf("key b after a fetch: %v", err)
	}
}

// The set is fetched again every Refresh: a removed key is refused with no
// token asking for a fetch.
func TestJWKSRefresh(t *testing.T) {
	a := newSigner(t, "a", jwt.SigningMethodRS256)
	b := newSigner(t, "b", jwt.SigningMethodEdDSA)
	p := newProvider(t, a, b)
	auth := &server.JWT{JWKS: newJWKS(t, p.URL, server.JWKSOptions{Refresh: 5 * time.Millisecond})}
	if _, err := authenticate(auth, a.sign(nil)); err != nil {
		t.Fatalf("key a: %v", err)
	}
	p.remove("a")
	// Two fetches after the removal: one began after it.
	for i, start := 0, p.fetches.Load(); p.fetches.Load() < start+2; i++ {
		if i == 2000 {
			t.Fatal("no refresh in 2000 waits of 5ms")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := authenticate(auth, a.sign(nil)); !errors.Is(err, wire.ErrUnauthorized) {
		t.Errorf("key a after a refresh: %v, want ErrUnauthorized", err)
	}
}

// A flood of tokens naming unknown keys costs the provider a bounded
// number of fetches: one at start, then at most one per UnknownKID.
func TestJWKSUnknownKIDFlood(t *testing.T) {
	a := newSigner(t, "a", jwt.SigningMethodES256)
	p := newProvider(t, a)
	auth := &server.JWT{JWKS: newJWKS(t, p.URL, server.JWKSOptions{})}
	start := time.Now()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 25 {
				s := a
				s.kid = fmt.Sprintf("made-up-%d-%d", g, i)
				if _, err := authenticate(auth, s.sign(nil)); !errors.Is(err, wire.ErrUnauthorized) {
					t.Errorf("kid %s: %v, want ErrUnauthorized", s.kid, err)
				}
			}
		})
	}
	wg.Wait()
	bound := 2 + int64(time.Since(start)/server.DefaultJWKSUnknownKID)
	if got := p.fetches.Load(); got > bound {
		t.Errorf("fetches = %d for 200 unknown kids, want at most %d", got, bound)
	}
	if _, err := authenticate(auth, a.sign(nil)); err != nil {
		t.Errorf("a published key after the flood: %v", err)
	}
}

// NewJWKS fails fast, naming the URL: a provider that is down, answers an
// error, holds no usable key, answers too much or too slowly, and a URL
// that is not https.
func TestJWKSUnavailableAtStart(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "oops", 503) }))
	defer failing.Close()
	symmetric := newProvider(t)
	symmetric.raw = []byte(`{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}]}`)
	huge := newProvider(t, newSigner(t, "a", jwt.SigningMethodEdDSA))
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer slow.Close()

	for _, tt := range []struct {
		name string
		url  string
		opts server.JWKSOptions
		want string
	}{
		{"down", down.URL, server.JWKSOptions{}, down.URL},
		{"503", failing.URL, server.JWKSOptions{}, "503"},
		{"only a symmetric key", symmetric.URL, server.JWKSOptions{}, "no RSA, ECDSA or Ed25519"},
		{"too large", huge.URL, server.JWKSOptions{MaxBytes: 64}, "larger than 64 bytes"},
		{"too slow", slow.URL, server.JWKSOptions{Timeout: 50 * time.Millisecond}, slow.URL},
		{"plain http", "http://id.example.com/jwks.json", server.JWKSOptions{}, "want https"},
		{"relative", "/jwks.json", server.JWKSOptions{}, "want an absolute https URL"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k, err := server.NewJWKS(t.Context(), tt.url, tt.opts)
			if err == nil {
				k.Close()
				t.Fatal("NewJWKS succeeded, want an error")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewJWKS: %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

// After Close the set is no longer fetched, not even for an unknown kid;
// the cached keys stay in use.
func TestJWKSClose(t *testing.T) {
	a := newSigner(t, "a", jwt.SigningMethodRS256)
	p := newProvider(t, a)
	k, err := server.NewJWKS(context.Background(), p.URL, server.JWKSOptions{UnknownKID: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	auth := server.Authenticators{testkit.Tokens, &server.JWT{JWKS: k}}
	if err := auth.Close(); err != nil {
		t.Fatal(err)
	}
	before := p.fetches.Load()
	stranger := newSigner(t, "stranger", jwt.SigningMethodRS256)
	if _, err := authenticate(auth, stranger.sign(nil)); !errors.Is(err, wire.ErrUnauthorized) {
		t.Errorf("unknown kid: %v, want ErrUnauthorized", err)
	}
	if got := p.fetches.Load(); got != before {
		t.Errorf("fetches = %d after Close, want %d", got, before)
	}
	if _, err := authenticate(auth, a.sign(nil)); err != nil {
		t.Errorf("cached key after Close: %v", err)
	}
}

// The claims of a JWKS token other than tenant and user reach the
// server's rules: Principal.Claims, and the keys ClaimKeys reads.
func TestJWKSClaims(t *testing.T) {
	es := newSigner(t, "es", jwt.SigningMethodES256)
	p := newProvider(t, es)
	auth := &server.JWT{JWKS: newJWKS(t, p.URL, server.JWKSOptions{}), TenantClaim: "org_id"}
	pr, err := authenticate(auth, es.sign(jwt.MapClaims{"org_id": "acme", "groups": []string{"field", "office"}, "role": "admin"}))
	if err != nil {
		t.Fatal(err)
	}
	if pr.Tenant != "acme" || pr.User != "ada" || pr.Claims["role"] != "admin" {
		t.Errorf("principal = %+v, want tenant acme, user ada, claim role admin", pr)
	}
	keys, err := server.PrincipalKeys(server.ClaimKeys("groups", "group:")).Keys(pr, nil)
	if want := []string{"group:field", "group:office"}; err != nil || !slices.Equal(keys, want) {
		t.Errorf("ClaimKeys = %v, %v; want %v", keys, err, want)
	}
}

// A key the set publishes for encryption ("use": "enc") verifies no
// token, named by its kid or tried as one of the set without a kid: a
// provider's encryption key is not its signing key (RFC 7517 4.2). A key
// of no "use" still verifies.
func TestJWKSEncryptionKey(t *testing.T) {
	sig := newSigner(t, "sig", jwt.SigningMethodRS256)
	enc := newSigner(t, "enc", jwt.SigningMethodRS256)
	plain := newSigner(t, "plain", jwt.SigningMethodES256)
	set := jwkset.NewMemoryStorage()
	for _, k := range []struct {
		s   signer
		use jwkset.USE
	}{{sig, jwkset.UseSig}, {enc, jwkset.UseEnc}, {plain, ""}} {
		jwk, err := jwkset.NewJWKFromKey(k.s.key.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: k.s.kid, USE: k.use}})
		if err != nil {
			t.Fatal(err)
		}
		if err := set.KeyWrite(t.Context(), jwk); err != nil {
			t.Fatal(err)
		}
	}
	p := newProvider(t)
	p.raw = must(set.JSONPublic(t.Context()))
	auth := &server.JWT{JWKS: newJWKS(t, p.URL, server.JWKSOptions{})}
	encNoKid := enc
	encNoKid.kid = ""
	for _, tt := range []struct {
		name  string
		token string
		ok    bool
	}{
		{"the signing key", sig.sign(nil), true},
		{"a key of no use", plain.sign(nil), true},
		{"the encryption key, by its kid", enc.sign(nil), false},
		{"the encryption key, no kid", encNoKid.sign(nil), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := authenticate(auth, tt.token)
			if tt.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tt.ok && !errors.Is(err, wire.ErrUnauthorized) {
				t.Fatalf("got %v, want an error wrapping wire.ErrUnauthorized", err)
			}
		})
	}
}
