package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/tethersync/tether/wire"
)

// streamIdle is how long the event stream may stay silent before the
// client takes it for dead. The server sends a heartbeat every 20s.
const streamIdle = 60 * time.Second

// Events subscribes to the server's change events for the token's tenant
// and calls fn for each, until ctx ends or the stream drops. It calls
// opened, if not nil, once the server has subscribed the stream: changes
// committed after that are announced. It returns the error that ended the
// stream: ctx.Err() when ctx ended, else an *Error (transient for network
// failures and 5xx). The stream is authenticated like every request: with
// a TokenSource, a 401 gets a new token and one more try.
func (c *Client) Events(outer context.Context, opened func(), fn func(wire.Event)) error {
	return c.DeviceEvents(outer, "", opened, fn)
}

// DeviceEvents is Events for a stream that names device, with its key
// (SetDeviceKey): the server refuses it as it refuses the device's other
// requests, and ends it, with an *Error wrapping wire.ErrDeviceRevoked
// (not transient), when the device is revoked while it is open. device
// "" names none.
func (c *Client) DeviceEvents(outer context.Context, device string, opened func(), fn func(wire.Event)) error {
	return c.withToken(outer, "events", func(token string) error {
		return c.events(outer, token, device, opened, fn)
	})
}

// events follows the stream once, with token.
func (c *Client) events(outer context.Context, token, device string, opened func(), fn func(wire.Event)) error {
	ctx, cancel := context.WithCancel(outer)
	defer cancel()
	resp, err := c.subscribe(ctx, token, device)
	if err != nil {
		if outer.Err() != nil {
			return outer.Err()
		}
		return err
	}
	defer resp.Body.Close()
	if opened != nil {
		opened()
	}
	// A silent stream is a dead one: the watchdog ends the request.
	watchdog := time.AfterFunc(streamIdle, cancel)
	defer watchdog.Stop()
	err = readEvents(resp.Body, func() { watchdog.Reset(streamIdle) }, fn)
	if outer.Err() != nil {
		return outer.Err()
	}
	var refusal *Error
	switch {
	case errors.As(err, &refusal):
		return refusal
	case ctx.Err() != nil:
		err = fmt.Errorf("no event or heartbeat for %v", streamIdle)
	case err == nil:
		err = fmt.Errorf("stream ended")
	}
	return &Error{Op: "events", Err: err, transient: true}
}

// subscribe opens the event stream with token. It returns an *Error when
// the request fails or the server refuses it.
func (c *Client) subscribe(ctx context.Context, token, device string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/events", nil)
	if err != nil {
		return nil, &Error{Op: "events", Err: err}
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("User-Agent", c.agent)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if t := c.tenant.Load(); t != nil && *t != "" {
		req.Header.Set(wire.HeaderTenant, *t)
	}
	if device != "" {
		req.Header.Set(wire.HeaderDevice, device)
		if key := c.deviceKey(device); key != "" {
			req.Header.Set(wire.HeaderDeviceKey, key)
		}
	}
	resp, err := c.live.Do(req)
	if err != nil {
		return nil, &Error{Op: "events", Err: err, transient: true}
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, errorFrom("events", resp.StatusCode, resp.Header, resp.Body)
	}
	return resp, nil
}

// readEvents reads server-sent events from r until it ends, calling alive
// for each line and fn for each "changes" event, and returns the read
// error, if any, or, for an "error" event (the server's refusal of the
// stream's device, see Server's events), the *Error it describes.
func readEvents(r io.Reader, alive func(), fn func(wire.Event)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	var event, data string
	for sc.Scan() {
		alive()
		line := sc.Text()
		switch {
		case line == "":
			switch event {
			case "changes":
				var ev wire.Event
				if err := json.Unmarshal([]byte(data), &ev); err == nil {
					fn(ev)
				}
			case "error":
				return streamError(data)
			}
			event, data = "", ""
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			data += strings.TrimSpace(strings.TrimPrefix(line, "data:"))
		}
	}
	return sc.Err()
}

// streamError is the *Error of an "error" event whose data is a
// wire.ErrorBody: a refusal, with the status its code has.
func streamError(data string) *Error {
	var eb wire.ErrorBody
	_ = json.Unmarshal([]byte(data), &eb)
	err := wire.ErrorFor(eb.Error.Code, 0)
	if err == nil {
		err = wire.ErrForbidden
	}
	_, status := wire.Code(err)
	return &Error{Op: "events", Status: status, Code: eb.Error.Code, Message: eb.Error.Message, Err: err, refused: true}
}
