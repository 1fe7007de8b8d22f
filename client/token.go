package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// TokenSource supplies bearer tokens that change over time, such as
// short-lived JSON Web Tokens from an identity provider. It has the shape
// of golang.org/x/oauth2's TokenSource, with a context and a plain string;
// wrap an oauth2.TokenSource in a TokenFunc to use one.
type TokenSource interface {
	// Token returns a token to send as "Authorization: Bearer <token>".
	// The client calls it for its first request that needs a token and
	// keeps the answer for every request and the event stream, until the
	// server refuses it with 401: then the client calls Token again, once,
	// and sends the request again with the new token. Token must then
	// return a new token, not the one refused. Calls are serialized.
	Token(ctx context.Context) (string, error)
}

// TokenFunc adapts a function to TokenSource.
type TokenFunc func(ctx context.Context) (string, error)

// Token calls f.
func (f TokenFunc) Token(ctx context.Context) (string, error) { return f(ctx) }

// bearer returns the token to send: the static one, or the source's
// current one, fetched when none is held.
func (c *Client) bearer(ctx context.Context) (string, error) {
	if c.src == nil {
		return c.token, nil
	}
	c.tokMu.Lock()
	defer c.tokMu.Unlock()
	if c.tok == "" {
		tok, err := c.src.Token(ctx)
		if err != nil {
			return "", fmt.Errorf("token source: %w", err)
		}
		if tok == "" {
			return "", errors.New("token source returned an empty token")
		}
		c.tok = tok
	}
	return c.tok, nil
}

// refused drops tok, which the server refused, so that the next request
// gets a new one from the source. It reports whether a new token can be
// had, that is whether a source is set.
func (c *Client) refused(tok string) bool {
	if c.src == nil || tok == "" {
		return false
	}
	c.tokMu.Lock()
	if c.tok == tok { // not replaced by a concurrent request already
		c.tok = ""
	}
	c.tokMu.Unlock()
	return true
}

// unauthorized reports whether err is a 401 answer.
func unauthorized(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusUnauthorized
}

// withToken runs send with the current token and, when the server refuses
// it with 401 and a token source is set, once more with a new token.
func (c *Client) withToken(ctx context.Context, op string, send func(token string) error) error {
	for attempt := 0; ; attempt++ {
		tok, err := c.bearer(ctx)
		if err != nil {
			return &Error{Op: op, Err: err}
		}
		err = send(tok)
		// A refused token is never sent again; a request gets one more try.
		if unauthorized(err) && c.refused(tok) && attempt == 0 {
			continue
		}
		return err
	}
}
