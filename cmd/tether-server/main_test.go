package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/go-sql-driver/mysql"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
)

// files writes a schema file and a tokens file and returns their paths.
func files(t *testing.T, tokens string) (schema, toks string) {
	t.Helper()
	dir := t.TempDir()
	data, err := json.Marshal(testkit.Registry(t).Schema())
	if err != nil {
		t.Fatal(err)
	}
	schema, toks = filepath.Join(dir, "schema.json"), filepath.Join(dir, "tokens.json")
	if err := os.WriteFile(schema, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(toks, []byte(tokens), 0o600); err != nil {
		t.Fatal(err)
	}
	return schema, toks
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestMain(m *testing.M) {
	os.Exit(stores.Main(m))
}

func TestServeSQLite(t *testing.T) { serve(t, filepath.Join(t.TempDir(), "s.db")) }

func TestServePostgres(t *testing.T) { serve(t, stores.PostgresURL(t)) }

// -db takes a mysql:// URL; the test server's DSN is rewritten into one.
func TestServeMySQL(t *testing.T) {
	cfg, err := mysql.ParseDSN(stores.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	serve(t, fmt.Sprintf("mysql://%s@%s/%s", cfg.User, cfg.Addr, cfg.DBName))
}

// The binary serves the schema it is given over the store db names,
// authenticates with the tokens file, syncs devices, and stops cleanly when
// its context ends.
func serve(t *testing.T, db string) {
	schema, toks := files(t, `{"token-ada": {"tenant": "acme", "user": "ada"}}`)
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", addr, "-db", db,
			"-schema", schema, "-tokens", toks, "-strategy", "orders=server-wins"})
	}()
	url := "http://" + addr
	waitUp(t, url, http.DefaultClient)
	reg := testkit.Registry(t)
	a := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
	b := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
	c := testkit.Customer{Name: "Ada"}
	if err := a.DB.Save(t.Context(), &c); err != nil {
		t.Fatal(err)
	}
	a.Sync(t)
	if rep := b.Sync(t); rep.Pulled["customers"] != 1 {
		t.Errorf("second device pulled %v, want the customer", rep.Pulled)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after shutdown: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("server did not shut down")
	}
}

// With -tls-cert and -tls-key the binary serves HTTPS; the client verifies
// the certificate by default and syncs once it trusts it.
func TestServeTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	schema, toks := files(t, `{"token-ada": {"tenant": "acme", "user": "ada"}}`)
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", addr, "-db", filepath.Join(t.TempDir(), "s.db"),
			"-schema", schema, "-tokens", toks, "-tls-cert", certFile, "-tls-key", keyFile})
	}()
	defer func() {
		cancel()
		<-done
	}()
	url := "https://" + addr
	waitUp(t, url, &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}})
	err := client.New(url, client.Options{Token: "token-ada"}).Health(t.Context())
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("client with default settings: %v, want an unknown-authority error", err)
	}
	reg := testkit.Registry(t)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	d := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Transport: tr})
	c := testkit.Customer{Name: "Ada"}
	if err := d.DB.Save(t.Context(), &c); err != nil {
		t.Fatal(err)
	}
	if rep := d.Sync(t); rep.Pushed["customers"] != 1 {
		t.Errorf("pushed %v over TLS, want the customer", rep.Pushed)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their paths and a pool that trusts the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "tether test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pool
}

// waitUp polls the health endpoint until the server answers.
func waitUp(t *testing.T, url string, hc *http.Client) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := hc.Get(url + "/v1/health")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not answer: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With a JWT secret file, a signed token names the tenant and user.
func TestServeJWT(t *testing.T) {
	schema, _ := files(t, `{}`)
	secretFile := filepath.Join(t.TempDir(), "secret")
	secret := []byte("0123456789abcdef0123456789abcdef")
	if err := os.WriteFile(secretFile, append(secret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", addr, "-db", filepath.Join(t.TempDir(), "s.db"), "-schema", schema,
			"-jwt-hs256-secret-file", secretFile, "-jwt-issuer", "id.example.com", "-jwt-tenant-claim", "org"})
	}()
	defer func() {
		cancel()
		<-done
	}()
	url := "http://" + addr
	waitUp(t, url, http.DefaultClient)
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": "id.example.com", "sub": "ada", "org": "acme", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	api := client.New(url, client.Options{Token: token})
	api.SetDeviceKey("d1", strings.Repeat("k", 43))
	dev, err := api.RegisterDevice(t.Context(), "d1", "", nil)
	if err != nil || dev.Tenant != "acme" || dev.User != "ada" {
		t.Errorf("RegisterDevice = %+v, %v; want tenant acme, user ada", dev, err)
	}
	if _, err := client.New(url, client.Options{Token: token + "x"}).RegisterDevice(t.Context(), "d1", "", nil); err == nil {
		t.Error("a tampered token was accepted")
	}
}

func TestBadConfiguration(t *testing.T) {
	schema, toks := files(t, `{"token-ada": {"tenant": "acme", "user": "ada"}}`)
	_, noTenant := files(t, `{"token-ada": {"user": "ada"}}`)
	_, garbled := files(t, `{"token-ada": `)
	db := filepath.Join(t.TempDir(), "s.db")
	for name, args := range map[string][]string{
		"no tokens":          {"-schema", schema, "-db", db},
		"no schema":          {"-tokens", toks, "-db", db},
		"token lacks tenant": {"-schema", schema, "-tokens", noTenant, "-db", db},
		"garbled tokens":     {"-schema", schema, "-tokens", garbled, "-db", db},
		"unknown table":      {"-schema", schema, "-tokens", toks, "-db", db, "-strategy", "nope=server-wins"},
		"unknown strategy":   {"-schema", schema, "-tokens", toks, "-db", db, "-strategy", "orders=coin-toss"},
		"missing file":       {"-schema", filepath.Join(t.TempDir(), "absent.json"), "-tokens", toks, "-db", db},
	} {
		if err := run(t.Context(), args); err == nil {
			t.Errorf("%s: run succeeded, want an error", name)
		}
	}
}

// Connections that hold the server without using it are closed: an idle
// keep-alive connection (which needs no token) after -idle-timeout, a body
// that stops arriving after -body-timeout.
func TestConnectionTimeouts(t *testing.T) {
	schema, toks := files(t, `{"token-ada": {"tenant": "acme", "user": "ada"}}`)
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", addr, "-db", filepath.Join(t.TempDir(), "s.db"), "-schema", schema, "-tokens", toks,
			"-idle-timeout", "200ms", "-body-timeout", "200ms"})
	}()
	defer func() {
		cancel()
		<-done
	}()
	waitUp(t, "http://"+addr, http.DefaultClient)
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second)) // the test's own bound
		return c
	}

	idle := dial()
	defer idle.Close()
	io.WriteString(idle, "GET /v1/health HTTP/1.1\r\nHost: tether\r\n\r\n")
	br := bufio.NewReader(idle)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("idle keep-alive connection: read %v, want it closed by the server (EOF)", err)
	}

	slow := dial()
	defer slow.Close()
	io.WriteString(slow, "PUT /v1/sessions/s1/batches/0 HTTP/1.1\r\nHost: tether\r\nAuthorization: Bearer token-ada\r\n"+
		"X-Tether-Device: d1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"rows\":[")
	resp, err = http.ReadResponse(bufio.NewReader(slow), nil)
	if err == nil && resp.StatusCode < 400 {
		t.Errorf("a body that stopped arriving: %d, want it cut off", resp.StatusCode)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Errorf("a body that stopped arriving held the connection for 10 s")
	}
}

// The flags default to the server's defaults.
func TestFlagDefaults(t *testing.T) {
	c, err := parseFlags([]string{"-schema", "schema.json", "-tokens", "tokens.json"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.opts.Limits, (server.Limits{}).WithDefaults(); got != want {
		t.Errorf("limits %+v, want the server's defaults %+v", got, want)
	}
	o := c.opts
	got := []any{o.MaxBodyBytes, o.MaxBatchRows, o.MaxValueBytes, o.MaxPageBytes, o.MaxClockSkew, o.AuthFailures, o.AuthFailureBurst, o.SweepInterval, o.BodyTimeout}
	want := []any{int64(server.DefaultMaxBodyBytes), server.DefaultMaxBatchRows, server.DefaultMaxValueBytes, server.DefaultMaxPageBytes,
		server.DefaultMaxClockSkew, rate.Limit(server.DefaultAuthFailures), server.DefaultAuthFailureBurst, server.DefaultSweepInterval, server.DefaultBodyTimeout}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("option %d: %v, want %v", i, got[i], want[i])
		}
	}
}

// -trusted-user names the users who may write through POST /v1/write;
// without it, nobody may.
func TestTrustedUsers(t *testing.T) {
	c, err := parseFlags([]string{"-schema", "schema.json", "-tokens", "tokens.json"})
	if err != nil {
		t.Fatal(err)
	}
	if c.opts.Trusted != nil {
		t.Fatal("Trusted is set without -trusted-user")
	}
	c, err = parseFlags([]string{"-schema", "schema.json", "-tokens", "tokens.json", "-trusted-user", "office", "-trusted-user", "erp"})
	if err != nil {
		t.Fatal(err)
	}
	for user, want := range map[string]bool{"office": true, "erp": true, "ada": false} {
		if got := c.opts.Trusted(server.Principal{Tenant: "acme", User: user}); got != want {
			t.Errorf("Trusted(%s) = %v, want %v", user, got, want)
		}
	}
}
