package client

// The methods of this file are the server's API, one per endpoint (see
// package wire for the bodies). Those with a device argument name the
// device in wire.HeaderDevice and send its key, when SetDeviceKey gave
// one, in wire.HeaderDeviceKey: a server that checks keys refuses the
// request without it, or with another key than the device registered
// with, with wire.ErrDeviceKey (403).

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/wire"
)

// Health checks that the server answers. Give ctx a short deadline.
func (c *Client) Health(ctx context.Context) error {
	var h wire.Health
	return c.do(ctx, "health", http.MethodGet, "/health", "", nil, &h)
}

// RegisterDevice binds the device to the token's tenant, and returns the
// tenant and user the server authenticated. When tenant is not empty, the
// server refuses (403) credentials of any other tenant, and registers
// nothing. schema is the device's own (nil: the server's); the server
// refuses one that contradicts its own with wire.ErrSchemaMismatch. The
// device's first registration records its key (SetDeviceKey); the server
// refuses a registration of the device with another key, or none, with
// wire.ErrDeviceKey, and that of a new device past the user's limit of
// registered devices with wire.ErrDeviceLimit (409).
func (c *Client) RegisterDevice(ctx context.Context, device, tenant string, schema *entity.Schema) (wire.Device, error) {
	var out wire.Device
	err := c.do(ctx, "register device", http.MethodPost, "/devices", device, wire.Device{Device: device, Tenant: tenant, Schema: schema}, &out)
	return out, err
}

// OpenSession opens a push session for the device. With a session id
// (made by the caller, such as a UUID) opening is idempotent: opening the
// same id again returns the same session. Without one the server makes the
// id.
func (c *Client) OpenSession(ctx context.Context, device, session string) (string, error) {
	var out wire.Session
	err := c.do(ctx, "open session", http.MethodPost, "/sessions", device, wire.Session{Session: session}, &out)
	return out.Session, err
}

// SendBatch stages batch seq of a session. Re-sending a batch replaces it
// (unless the copy staged came from a later p.Attempt: wire.ErrConflict).
// With p.Open the server opens the session first if it has not yet; with
// p.Commit it commits the session after the batch and the answer's Commit
// holds the commit's answer.
func (c *Client) SendBatch(ctx context.Context, device, session string, seq int, rows []wire.Row, p wire.BatchParams) (wire.BatchAck, error) {
	var out wire.BatchAck
	path := "/sessions/" + url.PathEscape(session) + "/batches/" + strconv.Itoa(seq)
	q := url.Values{}
	if p.Open {
		q.Set(wire.BatchOpen, "1")
	}
	if p.Commit {
		q.Set(wire.BatchCommit, "1")
	}
	if p.Attempt > 0 {
		q.Set(wire.BatchAttempt, strconv.FormatInt(p.Attempt, 10))
		if p.Base >= 0 && p.Base < seq {
			q.Set(wire.BatchBase, strconv.Itoa(p.Base))
		}
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	err := c.do(ctx, fmt.Sprintf("send batch %d", seq), http.MethodPut, path, device, wire.Batch{Rows: rows}, &out)
	return out, err
}

// Commit applies a session on the server. Re-sending a commit returns the
// first answer.
func (c *Client) Commit(ctx context.Context, device, session string) (wire.Commit, error) {
	var out wire.Commit
	path := "/sessions/" + url.PathEscape(session) + "/commit"
	err := c.do(ctx, "commit session "+session, http.MethodPost, path, device, struct{}{}, &out)
	return out, err
}

// Abandon drops an open push session of the device and the rows it
// staged, so that it no longer counts against the server's limit of open
// sessions. It is idempotent: abandoning a session that is not open (never
// opened, expired, abandoned already) returns nil. A committed session is
// wire.ErrConflict.
func (c *Client) Abandon(ctx context.Context, device, session string) error {
	var out wire.Session
	path := "/sessions/" + url.PathEscape(session)
	return c.do(ctx, "abandon session "+session, http.MethodDelete, path, device, nil, &out)
}

// Settle commits a session whose last batch, sent with the commit, got no
// answer (wire.CommitRequest): the answer's Settled says whether that
// batch committed the session.
func (c *Client) Settle(ctx context.Context, device, session string, last wire.LastBatch) (wire.Commit, error) {
	var out wire.Commit
	path := "/sessions/" + url.PathEscape(session) + "/commit"
	err := c.do(ctx, "settle session "+session, http.MethodPost, path, device, wire.CommitRequest{Settle: &last}, &out)
	return out, err
}

// Changes returns up to limit rows changed after cursor.
//
// own names push sessions of device whose rows the caller holds as pushed:
// the server passes over those it kept as pushed (at most
// wire.MaxEchoSessions; nil for none).
func (c *Client) Changes(ctx context.Context, device, cursor string, limit int, own []string) (wire.Changes, error) {
	return c.ChangesHead(ctx, device, cursor, limit, own, nil)
}

// ChangesHead is Changes that calls head, if not nil, with where the page
// ends (its cursor, more, wait and partial, no rows) as soon as the
// answer tells, before its rows are read (wire.ReadChangesHead): a pull
// may ask for the next page meanwhile. A server that writes them after
// the rows never calls head. A page to set aside (Partial, More) comes as
// wire.ReadChangesAside reads it: with Raw, its rows without their values.
func (c *Client) ChangesHead(ctx context.Context, device, cursor string, limit int, own []string, head func(wire.Changes)) (wire.Changes, error) {
	out := headed{head: head}
	q := url.Values{}
	q.Set("cursor", cursor)
	q.Set("limit", strconv.Itoa(limit))
	if len(own) > 0 {
		q.Set("own", strings.Join(own, ","))
	}
	err := c.do(ctx, "pull changes", http.MethodGet, "/changes?"+q.Encode(), device, nil, &out)
	return out.page, err
}

// Snapshot returns a page of the tenant's live rows after cursor (""
// starts a snapshot), for a device that must rebuild (wire.Snapshot).
func (c *Client) Snapshot(ctx context.Context, device, cursor string, limit int) (wire.Snapshot, error) {
	var out wire.Snapshot
	q := url.Values{}
	q.Set("cursor", cursor)
	q.Set("limit", strconv.Itoa(limit))
	err := c.do(ctx, "snapshot", http.MethodGet, "/snapshot?"+q.Encode(), device, nil, &out)
	return out, err
}

// Digests returns the server's digest of every table of the tenant.
// With columns (a device's tables and their columns, id first), only
// those are digested: what a device of an older app version has in common
// with the server.
func (c *Client) Digests(ctx context.Context, columns map[string][]string) (wire.Digests, error) {
	var out wire.Digests
	if columns != nil {
		err := c.do(ctx, "digest", http.MethodPost, "/digest", "", wire.DigestRequest{Columns: columns}, &out)
		return out, err
	}
	err := c.do(ctx, "digest", http.MethodGet, "/digest", "", nil, &out)
	return out, err
}
