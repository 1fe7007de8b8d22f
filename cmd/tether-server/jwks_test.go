package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/tethersync/tether/client"
)

// With -jwt-jwks-url, a token signed with a key of the provider's set
// names the tenant and user; a token of another key is refused.
func TestServeJWKS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := jwkset.NewJWKFromKey(&key.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "k1", ALG: jwkset.AlgES256, USE: jwkset.UseSig}})
	if err != nil {
		t.Fatal(err)
	}
	set := jwkset.NewMemoryStorage()
	if err := set.KeyWrite(t.Context(), jwk); err != nil {
		t.Fatal(err)
	}
	data, err := set.JSONPublic(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(data) }))
	defer provider.Close()

	schema, _ := files(t, `{}`)
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", addr, "-db", filepath.Join(t.TempDir(), "s.db"), "-schema", schema,
			"-jwt-jwks-url", provider.URL, "-jwt-issuer", "https://id.example.com/", "-jwt-tenant-claim", "org_id"})
	}()
	defer func() {
		cancel()
		<-done
	}()
	url := "http://" + addr
	waitUp(t, url, http.DefaultClient)
	sign := func(key *ecdsa.PrivateKey) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
			"iss": "https://id.example.com/", "sub": "ada", "org_id": "acme", "exp": time.Now().Add(time.Hour).Unix(),
		})
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	api := client.New(url, client.Options{Token: sign(key)})
	api.SetDeviceKey("d1", strings.Repeat("k", 43))
	dev, err := api.RegisterDevice(t.Context(), "d1", "", nil)
	if err != nil || dev.Tenant != "acme" || dev.User != "ada" {
		t.Errorf("RegisterDevice = %+v, %v; want tenant acme, user ada", dev, err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.New(url, client.Options{Token: sign(other)}).RegisterDevice(t.Context(), "d1", "", nil); err == nil {
		t.Error("a token of an unpublished key was accepted")
	}
}

// A JWKS that cannot be loaded stops the command at start, naming the
// flag; -jwt-jwks-url excludes the other JWT keys.
func TestJWKSConfiguration(t *testing.T) {
	schema, _ := files(t, `{}`)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	db := filepath.Join(t.TempDir(), "s.db")
	for name, tt := range map[string]struct {
		args []string
		want string
	}{
		"down":          {[]string{"-jwt-jwks-url", down.URL}, "-jwt-jwks-url"},
		"plain http":    {[]string{"-jwt-jwks-url", "http://id.example.com/jwks.json"}, "want https"},
		"with a secret": {[]string{"-jwt-jwks-url", down.URL, "-jwt-hs256-secret-file", db}, "exclude each other"},
		"zero refresh":  {[]string{"-jwt-jwks-url", down.URL, "-jwt-jwks-refresh", "0s"}, "-jwt-jwks-refresh"},
	} {
		err := run(t.Context(), append([]string{"-schema", schema, "-db", db}, tt.args...))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: run = %v, want an error mentioning %q", name, err, tt.want)
		}
	}
}
