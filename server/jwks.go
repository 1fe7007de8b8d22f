package server

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// Defaults of JWKSOptions.
const (
	// DefaultJWKSRefresh is how often the key set is fetched again.
	DefaultJWKSRefresh = 15 * time.Minute
	// DefaultJWKSUnknownKID is the least time between two fetches caused
	// by tokens that name a key the cached set lacks.
	DefaultJWKSUnknownKID = time.Minute
	// DefaultJWKSTimeout bounds one fetch of the key set.
	DefaultJWKSTimeout = 10 * time.Second
	// DefaultJWKSMaxBytes is the largest key set response read.
	DefaultJWKSMaxBytes = 1 << 20
)

// minRSABits is the smallest RSA key whose signatures are accepted.
const minRSABits = 2048

// jwksMethods are the algorithms a key of a JWKS may verify: asymmetric
// only, since a key set is published. Each key further allows only the
// ones of its type (keyAllows).
var jwksMethods = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// signingUses are the "use" values of the keys that may verify a token:
// "sig", or none stated. A provider's encryption key ("enc") is not its
// signing key (RFC 7517 4.2).
var signingUses = []jwkset.USE{jwkset.UseSig, ""}

// JWKSOptions configure NewJWKS. The zero value works.
type JWKSOptions struct {
	// Refresh is how often the key set is fetched again in the
	// background, so that a key the provider removed is refused after
	// at most this long. Default DefaultJWKSRefresh.
	Refresh time.Duration
	// UnknownKID is the least time between two fetches caused by a
	// token naming a key ("kid") the cached set lacks: a new key is
	// picked up at once, and a flood of made-up key ids costs the
	// provider at most one fetch per UnknownKID. Default
	// DefaultJWKSUnknownKID.
	UnknownKID time.Duration
	// Timeout bounds one fetch. Default DefaultJWKSTimeout.
	Timeout time.Duration
	// MaxBytes is the largest response read; a larger one fails the
	// fetch. Default DefaultJWKSMaxBytes.
	MaxBytes int64
	// Client fetches the key set. Default a new http.Client with
	// Timeout. Its responses are cut at MaxBytes either way.
	Client *http.Client
	// Logger hears of failed refreshes (the cached keys stay in use).
	// Default slog.Default().
	Logger *slog.Logger
}

// JWKS is a JSON Web Key Set fetched from a URL (an identity provider's
// jwks_uri) and cached, for JWT.JWKS. It is fetched again every Refresh,
// and at once (rate limited) when a token names a key the cache lacks;
// each fetch replaces the whole cache, so a key the provider removed is
// refused after the next fetch. Only RSA (2048 bits or more), ECDSA
// (P-256, P-384, P-521) and Ed25519 keys are used, each for the
// algorithms of its type and its "alg" when the set gives one, and only
// those whose "use" is "sig" or not given (not an encryption key).
//
// It is safe for concurrent use. Close stops the background fetching.
type JWKS struct {
	url    string
	kf     keyfunc.Keyfunc
	ctx    context.Context // ends with Close
	cancel context.CancelFunc
}

// NewJWKS fetches the key set at rawURL and returns it, fetching it again
// in the background until ctx ends or Close is called. The URL must be
// https, or http to a loopback address (keys fetched in the clear could be
// swapped on the way, and then any token forged).
//
// It fails fast: a key set that cannot be fetched, or holds no usable key,
// is an error naming the URL and the cause, and nothing keeps running.
// (A server that started without keys would refuse every token.)
func NewJWKS(ctx context.Context, rawURL string, opts JWKSOptions) (*JWKS, error) {
	if err := checkJWKSURL(rawURL); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(ctx)
	client := *opts.Client
	client.Transport = maxBytesTransport{rt: client.Transport, max: opts.MaxBytes}
	logger := opts.Logger
	failFast := false
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{rawURL}, keyfunc.Override{
		Client:                    &client,
		HTTPTimeout:               opts.Timeout,
		RateLimitWaitMax:          opts.Timeout,
		RefreshInterval:           opts.Refresh,
		RefreshUnknownKID:         rate.NewLimiter(rate.Every(opts.UnknownKID), 1),
		NoErrorReturnFirstHTTPReq: &failFast,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				logger.WarnContext(ctx, "jwks refresh failed; cached keys stay in use", "url", u, "err", oneLine(err))
			}
		},
	})
	if err == nil {
		// Over the same storage: only keys for signatures, or of no
		// stated use, verify a token.
		kf, err = keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: kf.Storage(), UseWhitelist: signingUses})
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("jwks %s: cannot load the key set: %s", rawURL, oneLine(err))
	}
	keys, err := kf.Storage().KeyReadAll(ctx)
	if err == nil && !anyUsable(keys) {
		err = errors.New("the set holds no RSA, ECDSA or Ed25519 signing key")
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("jwks %s: %s", rawURL, oneLine(err))
	}
	return &JWKS{url: rawURL, kf: kf, ctx: ctx, cancel: cancel}, nil
}

// Close stops fetching the key set; the keys cached stay in use. It
// returns nil.
func (k *JWKS) Close() error {
	k.cancel()
	return nil
}

// String returns the URL of the key set.
func (k *JWKS) String() string { return k.url }

func (o JWKSOptions) withDefaults() JWKSOptions {
	if o.Refresh <= 0 {
		o.Refresh = DefaultJWKSRefresh
	}
	if o.UnknownKID <= 0 {
		o.UnknownKID = DefaultJWKSUnknownKID
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultJWKSTimeout
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultJWKSMaxBytes
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.Timeout}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// checkJWKSURL refuses a URL that is not https, or http to a loopback
// address.
func checkJWKSURL(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("jwks url: %w", err)
	}
	switch {
	case u.Host == "":
		return fmt.Errorf("jwks url %q: want an absolute https URL", rawURL)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	}
	return fmt.Errorf("jwks url %q: want https (plain http only to a loopback address)", rawURL)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// context returns a context for a key lookup of a request with context
// rctx: it ends with the request or with Close, whichever comes first.
func (k *JWKS) context(rctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(rctx)
	if k.ctx.Err() != nil {
		// Closed: AfterFunc would cancel in a goroutine of its own,
		// perhaps after the lookup fetched the set again.
		cancel()
		return ctx, cancel
	}
	stop := context.AfterFunc(k.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// keyfunc returns the jwt.Keyfunc of a token: the key its "kid" names
// (fetching the set again, rate limited, when the cache lacks it), or,
// without a "kid", every key of the set; only keys that allow the
// token's algorithm.
func (k *JWKS) keyfunc(ctx context.Context) jwt.Keyfunc {
	lookup := k.kf.KeyfuncCtx(ctx)
	return func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		alg := t.Method.Alg()
		key, err := lookup(t)
		switch {
		case errors.Is(err, jwkset.ErrKeyNotFound):
			return nil, fmt.Errorf("the key set at %s has no key %q", k.url, clip(kid))
		case err != nil:
			return nil, fmt.Errorf("key %q: %s", clip(kid), oneLine(err))
		}
		if set, ok := key.(jwt.VerificationKeySet); ok {
			var fit jwt.VerificationKeySet
			for _, key := range set.Keys {
				if keyAllows(key, alg) {
					fit.Keys = append(fit.Keys, key)
				}
			}
			if len(fit.Keys) == 0 {
				return nil, fmt.Errorf("no key of the set at %s allows %s", k.url, alg)
			}
			return fit, nil
		}
		if !keyAllows(key, alg) {
			return nil, fmt.Errorf("key %q does not allow %s", clip(kid), alg)
		}
		return key, nil
	}
}

// keyAllows reports whether key may verify signatures of algorithm alg:
// RSA keys of at least minRSABits the RSA algorithms, an ECDSA key the
// algorithm of its curve, an Ed25519 key EdDSA. Symmetric keys nothing.
func keyAllows(key any, alg string) bool {
	switch key := key.(type) {
	case *rsa.PublicKey:
		return key.N.BitLen() >= minRSABits && (strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS"))
	case *ecdsa.PublicKey:
		switch key.Curve {
		case elliptic.P256():
			return alg == "ES256"
		case elliptic.P384():
			return alg == "ES384"
		case elliptic.P521():
			return alg == "ES512"
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// anyUsable reports whether a key of keys verifies some algorithm.
func anyUsable(keys []jwkset.JWK) bool {
	for _, k := range keys {
		if !slices.Contains(signingUses, k.Marshal().USE) {
			continue
		}
		key := k.Key()
		if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
			key = pk.Public()
		}
		for _, alg := range jwksMethods {
			if keyAllows(key, alg) {
				return true
			}
		}
	}
	return false
}

// oneLine joins the lines of err's message (errors.Join writes several).
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", ": ")
}

// maxBytesTransport fails reading a response body past max bytes.
type maxBytesTransport struct {
	rt  http.RoundTripper // nil: http.DefaultTransport
	max int64
}

// RoundTrip implements http.RoundTripper.
func (t maxBytesTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rt := t.rt
	if rt == nil {
		rt = http.DefaultTransport
	}
	resp, err := rt.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = maxBytesBody{http.MaxBytesReader(nil, resp.Body, t.max)}
	return resp, nil
}

// maxBytesBody names the limit an http.MaxBytesReader hit in a response.
type maxBytesBody struct{ io.ReadCloser }

func (b maxBytesBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if mb, ok := errors.AsType[*http.MaxBytesError](err); ok {
		err = fmt.Errorf("key set larger than %d bytes", mb.Limit)
	}
	return n, err
}
