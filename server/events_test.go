package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// streamBound bounds every wait of the event stream tests: a stream that
// should end, or a slot that should come free, does well before it.
const streamBound = 30 * time.Second

// stream opens an event stream with token. On 200 it reads the stream's
// first line, so that the server has subscribed it, and returns the
// response, whose body the caller closes (or cancels ctx); otherwise it
// returns the status and error code of the refusal.
func stream(t *testing.T, ctx context.Context, url, token string) (resp *http.Response, status int, code, msg string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", url+"/v1/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("open a stream: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var eb wire.ErrorBody
		json.NewDecoder(resp.Body).Decode(&eb)
		return nil, resp.StatusCode, eb.Error.Code, eb.Error.Message
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, ": tether events") {
		resp.Body.Close()
		t.Fatalf("first line of the stream: %q, %v", line, err)
	}
	return resp, resp.StatusCode, "", ""
}

// Item 7 of issue 19: a principal holds at most MaxStreams event streams;
// past it a stream is refused with 429 rate_limited naming the limit, and
// once one of its streams ends a new one is accepted. Other principals,
// of the same tenant or another, are not held back.
func TestEventStreamsPerPrincipal(t *testing.T) {
	reg := testkit.Registry(t)
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		store := db.Open(t, reg.Schema(), stores.Options{})
		url := testkit.Serve(t, store, server.Options{MaxStreams: 2}).URL
		ctx, cancel := context.WithTimeout(t.Context(), streamBound)
		defer cancel()

		first, firstCtx := context.WithCancel(ctx)
		defer firstCtx()
		if _, st, code, msg := stream(t, first, url, "token-ada"); st != 200 {
			t.Fatalf("ada's first stream: %d %s %s", st, code, msg)
		}
		if _, st, code, msg := stream(t, ctx, url, "token-ada"); st != 200 {
			t.Fatalf("ada's second stream: %d %s %s", st, code, msg)
		}
		_, st, code, msg := stream(t, ctx, url, "token-ada")
		if st != http.StatusTooManyRequests || code != "rate_limited" || !strings.Contains(msg, "holds 2 open event streams") || !strings.Contains(msg, "MaxStreams 2") {
			t.Fatalf("ada's third stream: %d %s %q, want 429 rate_limited naming the limit and the streams held", st, code, msg)
		}
		for _, token := range []string{"token-bob", "token-globe"} {
			if _, st, code, msg := stream(t, ctx, url, token); st != 200 {
				t.Errorf("%s's stream while ada is at her limit: %d %s %s", token, st, code, msg)
			}
		}

		firstCtx() // ada's first stream ends; the server frees its slot as it notices
		for {
			resp, st, code, msg := stream(t, ctx, url, "token-ada")
			if st == 200 {
				resp.Body.Close()
				break
			}
			if st != http.StatusTooManyRequests || ctx.Err() != nil {
				t.Fatalf("ada's stream after one of hers ended: %d %s %s", st, code, msg)
			}
			select {
			case <-ctx.Done():
				t.Fatalf("ada's slot was not freed within %v", streamBound)
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
}

// Item 7 of issue 19: a stream ends by itself when the JWT that opened it
// expires, and a token already past its "exp" (but within the JWT
// authenticator's leeway, so accepted by other requests) opens none.
func TestEventStreamEndsAtTokenExpiry(t *testing.T) {
	reg := testkit.Registry(t)
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		store := db.Open(t, reg.Schema(), stores.Options{})
		auth := &server.JWT{Secret: jwtSecret}
		url := testkit.Serve(t, store, server.Options{Auth: auth}).URL
		ctx, cancel := context.WithTimeout(t.Context(), streamBound)
		defer cancel()

		resp, st, code, msg := stream(t, ctx, url, jwtToken(t, time.Now().Add(3*time.Second)))
		if st != 200 {
			t.Fatalf("stream with a fresh token: %d %s %s", st, code, msg)
		}
		defer resp.Body.Close()
		_, err := io.Copy(io.Discard, resp.Body)
		if err != nil || ctx.Err() != nil {
			t.Fatalf("the stream did not end at its token's expiry (within %v): %v", streamBound, err)
		}

		expired := jwtToken(t, time.Now().Add(-2*time.Second))
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("Authorization", "Bearer "+expired)
		if _, err := auth.Authenticate(req); err != nil {
			t.Fatalf("a token within the leeway: %v, want it accepted", err)
		}
		if _, st, code, msg := stream(t, ctx, url, expired); st != http.StatusUnauthorized || !strings.Contains(msg, "expired") {
			t.Errorf("stream with a token past its exp: %d %s %q, want 401 saying it expired", st, code, msg)
		}
	})
}

// When its stream ends at the token's expiry, the client reconnects with a
// new token from its TokenSource (the one it holds gets 401), not with the
// expired one.
func TestEventStreamReconnectsWithNewToken(t *testing.T) {
	reg := testkit.Registry(t)
	store := stores.NewDatabase(t, stores.SQLite).Open(t, reg.Schema(), stores.Options{})
	url := testkit.Serve(t, store, server.Options{Auth: &server.JWT{Secret: jwtSecret}}).URL
	var minted atomic.Int32
	api := client.New(url, client.Options{TokenSource: client.TokenFunc(func(context.Context) (string, error) {
		minted.Add(1)
		return jwtToken(t, time.Now().Add(3*time.Second)), nil
	})})
	ctx, cancel := context.WithTimeout(t.Context(), streamBound)
	defer cancel()

	opened := 0
	err := api.Events(ctx, func() { opened++ }, func(wire.Event) {})
	if ctx.Err() != nil || !client.Transient(err) {
		t.Fatalf("first stream: %v, want a transient end at the token's expiry within %v", err, streamBound)
	}
	again, stop := context.WithCancel(ctx)
	defer stop()
	err = api.Events(again, func() { opened++; stop() }, func(wire.Event) {})
	if ctx.Err() != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("second stream: %v, want it opened (and then cancelled)", err)
	}
	if opened != 2 || minted.Load() != 2 {
		t.Errorf("streams opened %d, tokens minted %d; want 2 and 2", opened, minted.Load())
	}
}

// Principal.Expires comes from the JWT's "exp" claim, and stays out of a
// principal's JSON (the tokens file's form).
func TestPrincipalExpires(t *testing.T) {
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer "+jwtToken(t, exp))
	p, err := (&server.JWT{Secret: jwtSecret}).Authenticate(req)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Expires.Equal(exp) {
		t.Errorf("Expires = %v, want the exp claim %v", p.Expires, exp)
	}
	data, err := json.Marshal(p)
	if got, want := string(data), `{"tenant":"acme","user":"ada"}`; err != nil || got != want {
		t.Errorf("json.Marshal(Principal) = %s, %v; want %s", got, err, want)
	}
	req.Header.Set("Authorization", "Bearer token-ada")
	if p, err := testkit.Tokens.Authenticate(req); err != nil || !p.Expires.IsZero() {
		t.Errorf("a static token's principal: %+v, %v; want no expiry", p, err)
	}
}
