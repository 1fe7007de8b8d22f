package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/tethersync/tether/wire"
)

// Error is a failed request.
type Error struct {
	// Op is what the client was doing, such as "commit session 42".
	Op string
	// Status is the HTTP status; 0 when no answer arrived.
	Status int
	// Code and Message are the server's description of the problem.
	Code    string
	Message string
	// RetryAfter is the wait the server asked for with 429 or 503.
	RetryAfter time.Duration
	// Err is the wire sentinel for Status, or the network error.
	Err error

	transient bool
	refused   bool // an answer with one of the API's codes and a 4xx status
}

// Error describes the failed call: the operation, the status and code, and the
// server's message or the underlying error.
func (e *Error) Error() string {
	switch {
	case e.Message != "":
		return fmt.Sprintf("%s: %d %s: %s", e.Op, e.Status, e.Code, e.Message)
	case e.Status != 0:
		return fmt.Sprintf("%s: %d: %v", e.Op, e.Status, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Op, e.Err)
}

// Unwrap returns the underlying sentinel or network error and, for an
// answer with one of the API's error codes and a 4xx status,
// wire.ErrRefused: the server applied none of the request.
func (e *Error) Unwrap() []error {
	if e.refused {
		return []error{e.Err, wire.ErrRefused}
	}
	return []error{e.Err}
}

// Transient reports whether retrying the same request can succeed: network
// errors, timeouts, cut answers, 5xx and 429. 400, 401, 403, 404, 409 and
// 413 are permanent (413 asks the caller to send less).
func Transient(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.transient
	}
	return false
}

// RetryAfter returns the wait the server asked for, or 0.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

func errorFrom(op string, status int, h http.Header, body io.Reader) *Error {
	var eb wire.ErrorBody
	data, _ := io.ReadAll(io.LimitReader(body, 64<<10))
	_ = json.Unmarshal(data, &eb)
	e := &Error{
		Op:        op,
		Status:    status,
		Code:      eb.Error.Code,
		Message:   eb.Error.Message,
		Err:       wire.ErrorFor(eb.Error.Code, status),
		transient: status >= 500 || status == http.StatusTooManyRequests,
		// A 413 is refused whoever answers it (a proxy's body limit too):
		// nothing of a body too large was applied.
		refused: status == http.StatusRequestEntityTooLarge || status >= 400 && status < 500 && wire.ErrorFor(eb.Error.Code, 0) != nil,
	}
	if e.Code == "" {
		e.Code = http.StatusText(status)
	}
	if eb.Error.Code == "" && status == http.StatusBadGateway {
		// A gateway in front of the server could not reach it. (A 504
		// says it reached the server, which was slow: transient.)
		e.Err = fmt.Errorf("%w: %w (a gateway's answer)", ErrUnreachable, e.Err)
	}
	if ra := h.Get("Retry-After"); ra != "" {
		if secs, err := strconv.Atoi(ra); err == nil && secs >= 0 {
			e.RetryAfter = time.Duration(secs) * time.Second
		} else if t, err := http.ParseTime(ra); err == nil {
			e.RetryAfter = time.Until(t)
		}
	}
	return e
}
