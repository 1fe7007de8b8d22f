package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/tethersync/tether/wire"
)

// WriteDevice is the device id of the server's own writes (Server.Write,
// POST /v1/write): their rows carry it (wire.Row.Device, the audit log's
// device) and their clock stamps name it.
//
// Each tenant that gets a write has a device of this id, registered on
// its first write under the user of the same name, not under a user of
// the tenant: it counts against no one's MaxUserDevices, and a back
// office writes whatever devices its users hold. It is registered
// without a key (with a key hash that is no SHA-256), so no request can
// act as it, and no device registers its id (a registration naming it,
// or ExternalDevice, is refused with 400 bad_request); it
// never pulls, so it holds no tombstone back. The sweep forgets it after
// DeviceRetention without a write that needed to register it, and the
// next write registers it again.
const WriteDevice = "tether-server"

// writeKeyHash is WriteDevice's key hash: not 64 hex digits, so the hash
// of no device key.
const writeKeyHash = "none: the server's own writes have no key"

// Bounds of a write's session (see writeLimits).
const (
	// writeSessionIdle is how long a write's session may wait between
	// its batches: a write stages them one after the other, so one left
	// open (a write that failed half-way) is dropped soon, by the next.
	writeSessionIdle = 10 * time.Minute
	// writeSessions is the number of writes of one user that may be
	// under way at once, past Options.Limits.MaxOpenSessions.
	writeSessions = 64
)

// Write applies rows as one push session of the server's own device
// (WriteDevice), for principal p, through the commit path a device's
// push takes: the rows get their versions in commit order, are recorded
// in the audit log with p.User as their user, settle conflicts by their
// tables' strategies, follow the reference rules, get their scope keys,
// and reach devices by their next pull and live events. The scope checks
// and Options.Authorize do not apply: the caller is trusted (see
// Trusted). It is how a back office assigns work and manages
// memberships; POST /v1/write does the same over HTTP.
//
// Rows may be of several tables, in any order: the tables apply parents
// first (priority order), in one commit. Each row is checked as a pushed
// one is (its table and columns, its values converted to their canonical
// form; Device, ModifiedBy and Version are set by the server). Values
// are in wire form (as in a JSON body) or Go values: int64, float64,
// bool, string, time.Time, []byte for a blob, JSON text for a json
// column. A row's
// HLC may be empty: the server then stamps it with its own clock, a
// stamp later than any the server's writes made before in this process.
// A row that carries a stamp keeps its time and counter, and its device
// becomes WriteDevice. A stamp more than Options.MaxClockSkew ahead of
// the server's clock is replaced by the server's, as a pushed one is.
//
// A row's Base is the server version the write is based on, as in a
// push: a row whose server row has moved past it is a conflict, settled
// by the table's strategy. A row with Base 0 (a write that did not read
// the row first) on a row that exists is such a conflict: under
// last-writer-wins the later stamp wins, and the server's fresh stamp is
// later than every row stamped before it, but for a row a device stamped
// ahead of the server's clock (by at most MaxClockSkew); under
// server-wins the server row stays; under client-wins the write applies.
// Write returns the commit's version; the conflicts are in the answer of
// POST /v1/write.
//
// A bad row (an unknown table or column, a value of the wrong kind, the
// same row twice) is an error wrapping wire.ErrBadRequest naming the
// row, and nothing is applied; more rows or bytes than a session may
// stage (Limits.MaxSessionRows, MaxSessionBytes) is wire.ErrTooLarge. It
// is safe for concurrent use.
func (s *Server) Write(ctx context.Context, p Principal, rows []wire.Row) (version int64, err error) {
	c, err := s.write(ctx, p, uuid.NewString(), rows)
	return c.Version, err
}

// write applies rows as the write session named session (see Write): a
// session committed already by the same rows answers with its first
// commit, and applies nothing.
func (s *Server) write(ctx context.Context, p Principal, session string, rows []wire.Row) (wire.Commit, error) {
	if p.Tenant == "" {
		return wire.Commit{}, fmt.Errorf("write: the principal names no tenant: %w", wire.ErrBadRequest)
	}
	batches, err := s.writeBatches(rows)
	if err != nil {
		return wire.Commit{}, fmt.Errorf("write: %w", err)
	}
	digest, err := writeDigest(rows)
	if err != nil {
		return wire.Commit{}, fmt.Errorf("write: %w", err)
	}
	ctx = Trusted(ctx)
	if s.opts.Observer != nil {
		ctx = WithObserver(ctx, s.opts.Observer)
	}
	for attempt := 0; ; attempt++ {
		if err := s.writeDevice(ctx, p.Tenant); err != nil {
			return wire.Commit{}, fmt.Errorf("write: %w", err)
		}
		c, err := s.pushWrite(ctx, p, session, batches, digest)
		if attempt == 0 && errors.Is(err, wire.ErrDeviceUnknown) {
			continue // the sweep forgot WriteDevice meanwhile
		}
		if err != nil {
			return wire.Commit{}, fmt.Errorf("write %s: %w", session, err)
		}
		return c, nil
	}
}

// writeBatches checks and canonicalizes copies of rows (the caller's stay
// as they are) and stamps those without a stamp, and returns them as
// batches of one table each, at most MaxBatchRows rows, tables in
// priority order.
func (s *Server) writeBatches(rows []wire.Row) ([][]wire.Row, error) {
	lim := s.opts.Limits
	switch {
	case len(rows) == 0:
		return nil, fmt.Errorf("no rows to write: %w", wire.ErrBadRequest)
	case len(rows) > lim.MaxSessionRows:
		return nil, fmt.Errorf("%d rows, more than a session's limit of %d (MaxSessionRows): %w", len(rows), lim.MaxSessionRows, wire.ErrTooLarge)
	}
	schema := s.store.Schema()
	st := stamping{device: WriteDevice, now: s.opts.Now(), skew: s.opts.MaxClockSkew}
	byTable := map[string][]wire.Row{}
	seen := map[[2]string]int{}
	var size int64
	for i, r := range rows {
		t := schema.Table(r.Table)
		if t == nil {
			return nil, fmt.Errorf("row %d: unknown table %q: %w", i, clip(r.Table), wire.ErrBadRequest)
		}
		if err := writeRow(&r, st); err != nil {
			return nil, fmt.Errorf("row %d (%s %q): %w", i, r.Table, clip(r.ID), err)
		}
		if err := validateRow(t, &r, st); err != nil {
			return nil, fmt.Errorf("row %d (%s %q): %w", i, r.Table, clip(r.ID), err)
		}
		key := [2]string{r.Table, r.ID}
		if j, dup := seen[key]; dup {
			return nil, fmt.Errorf("row %d (%s %q): the same row as row %d: %w", i, r.Table, clip(r.ID), j, wire.ErrBadRequest)
		}
		seen[key] = i
		size += int64(r.Size())
		byTable[r.Table] = append(byTable[r.Table], r)
	}
	if size > lim.MaxSessionBytes {
		return nil, fmt.Errorf("%d bytes of rows, more than a session's limit of %d (MaxSessionBytes): %w", size, lim.MaxSessionBytes, wire.ErrTooLarge)
	}
	var batches [][]wire.Row
	for _, t := range schema.Tables {
		for b := range slices.Chunk(byTable[t.Name], s.opts.MaxBatchRows) {
			batches = append(batches, b)
		}
	}
	return batches, nil
}

// writeRow prepares a copy of a written row for validateRow: it refuses
// what only pulls carry, gives the row its own values in wire form
// (wireValues), and a stamp of the server's: a new one, or the time and
// counter of the one it carries.
func writeRow(r *wire.Row, st stamping) error {
	if r.Evict {
		return fmt.Errorf("evict is for pulls, not writes: %w", wire.ErrBadRequest)
	}
	var err error
	if r.Values, err = wireValues(r.Values); err != nil {
		return err
	}
	r.Changed = slices.Clone(r.Changed)
	if r.HLC == "" {
		r.HLC = writeClock.stamp(st.now, st.skew)
		return nil
	}
	ms, counter, _, err := wire.ParseStamp(r.HLC)
	if err != nil {
		return fmt.Errorf("%w: %w", err, wire.ErrBadRequest)
	}
	r.HLC = wire.FormatStamp(ms, counter, WriteDevice)
	return nil
}

// wireValues returns a copy of values in the form a JSON body decodes to
// (strings, json.Number, booleans, nil), which validateRow takes: a Go
// caller may write an int64, a float64, a time.Time or a []byte (a blob,
// as base64) as well. A value JSON cannot hold is an error wrapping
// wire.ErrBadRequest.
func wireValues(values map[string]any) (map[string]any, error) {
	if values == nil {
		return nil, nil
	}
	data, err := json.Marshal(values)
	if err != nil {
		return nil, fmt.Errorf("values: %v: %w", err, wire.ErrBadRequest)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var out map[string]any
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("values: %v: %w", err, wire.ErrBadRequest)
	}
	return out, nil
}

// writeDigest returns the SHA-256, in hex, of rows as the caller sent
// them: it tells a retried write (the same rows) from another write that
// uses the same request id.
func writeDigest(rows []wire.Row) (string, error) {
	h := sha256.New()
	if err := json.NewEncoder(h).Encode(rows); err != nil {
		return "", fmt.Errorf("rows as JSON: %v: %w", err, wire.ErrBadRequest)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeDevice registers WriteDevice in tenant, unless it is registered.
func (s *Server) writeDevice(ctx context.Context, tenant string) error {
	p := Principal{Tenant: tenant, User: WriteDevice}
	err := s.store.CheckDevice(ctx, p, WriteDevice, writeKeyHash)
	if errors.Is(err, wire.ErrDeviceUnknown) {
		lim := s.opts.Limits
		lim.MaxUserDevices = math.MaxInt32 // its own user's only device
		err = s.store.RegisterDevice(ctx, p, Registration{Device: WriteDevice, KeyHash: writeKeyHash}, lim)
	}
	if errors.Is(err, wire.ErrDeviceKey) {
		// Not a 403 for the writer: the tenant's data is in the way (a
		// device that registered the id before registrations refused it).
		return fmt.Errorf("a device of the tenant registered the id %s, which the server's writes use: %v: %w", WriteDevice, err, wire.ErrConflict)
	}
	return err
}

// pushWrite stages batches in session, opening it with the first and
// committing it with the last (whose digest is that of the whole write),
// as WriteDevice. A session committed already answers with its first
// commit, if the same write committed it.
func (s *Server) pushWrite(ctx context.Context, p Principal, session string, batches [][]wire.Row, digest string) (wire.Commit, error) {
	lim := s.writeLimits()
	restarted := false
	for seq := 0; seq < len(batches); seq++ {
		last := seq == len(batches)-1
		o := PushOptions{Open: true, Attempt: 1, Resolve: s.resolve, Limits: lim}
		if last {
			o.Commit = &LastBatch{Seq: seq, Digest: digest}
		}
		c, err := s.store.Push(ctx, p, WriteDevice, session, seq, batches[seq], o)
		switch {
		case err == nil && last:
			return *c, nil
		case err == nil:
		case !last && errors.Is(err, wire.ErrConflict):
			// Committed already (a retry), or not this writer's session:
			// the committing batch tells which, and answers.
			seq = len(batches) - 2
		case !restarted && errors.Is(err, wire.ErrNotFound):
			// A write that failed half-way left the session open, and
			// it expired (writeSessionIdle): it starts over.
			restarted, seq = true, -1
		default:
			return wire.Commit{}, err
		}
	}
	return wire.Commit{}, errors.New("a write of no batches") // writeBatches makes one at least
}

// writeLimits are the limits of a write's session: Options.Limits, but
// a write's open session expires sooner (writeSessionIdle), and more
// writes of one user may be under way at once (writeSessions).
func (s *Server) writeLimits() Limits {
	lim := s.opts.Limits
	lim.SessionIdle = min(lim.SessionIdle, writeSessionIdle)
	lim.MaxOpenSessions = max(lim.MaxOpenSessions, writeSessions)
	return lim
}

// writeClock stamps the rows of writes that carry no stamp: one hybrid
// logical clock for the process, so that a write's stamps are later than
// those of the writes before it, even within one millisecond (under
// last-writer-wins, a later write of a row wins over an earlier one).
var writeClock stampClock

// stampClock makes WriteDevice's clock stamps.
type stampClock struct {
	mu          sync.Mutex
	ms, counter int64
}

// stamp returns a stamp at now, or just after the clock's last stamp
// when that is not before now (but not past now+skew: a clock moved back
// by more than that starts over from now).
func (c *stampClock) stamp(now time.Time, skew time.Duration) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ms := now.UnixMilli()
	switch {
	case c.ms < ms || c.ms > ms+skew.Milliseconds():
		c.ms, c.counter = ms, 0
	case c.counter < wire.MaxStampCounter:
		c.counter++
	default:
		c.ms, c.counter = c.ms+1, 0
	}
	return wire.FormatStamp(c.ms, c.counter, WriteDevice)
}

// writeHTTP is POST /v1/write (wire.WriteRequest): Write for principals
// Options.Trusted accepts, idempotent by the request's id.
func (s *Server) writeHTTP(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error) {
	if s.opts.Trusted == nil || !s.opts.Trusted(p) {
		return nil, fmt.Errorf("user %s may not write through %s/write: the server does not trust it (Options.Trusted): %w",
			clip(p.User), wire.APIPrefix, wire.ErrForbidden)
	}
	req, err := s.decodeWrite(w, r)
	if err != nil {
		return nil, err
	}
	if !deviceRE.MatchString(req.Request) {
		return nil, fmt.Errorf("missing or malformed request id %q: want %s: %w", clip(req.Request), wire.IDFormat, wire.ErrBadRequest)
	}
	c, err := s.write(ctx, p, req.Request, req.Rows)
	if err != nil {
		return nil, err
	}
	return wire.WriteResult{Version: c.Version, Applied: c.Applied, Conflicts: c.Conflicts}, nil
}

// decodeWrite reads a wire.WriteRequest, bounded as a pushed batch is
// (MaxBodyBytes, MaxValueBytes), with at most a session's rows.
func (s *Server) decodeWrite(w http.ResponseWriter, r *http.Request) (wire.WriteRequest, error) {
	body, finish, err := s.body(w, r, bodyLimit{name: "MaxBodyBytes", maxBytes: s.opts.MaxBodyBytes})
	if err != nil {
		return wire.WriteRequest{}, err
	}
	req, err := decodeWriteRequest(body, batchLimits{maxRows: s.opts.Limits.MaxSessionRows, maxValue: s.opts.MaxValueBytes})
	finish(err == nil)
	return req, err
}

// decodeWriteRequest reads {"request": id, "rows": [row, ...]} from r as
// decodeBatch reads a batch: strictly, token by token, within lim.
func decodeWriteRequest(r io.Reader, lim batchLimits) (wire.WriteRequest, error) {
	d := &jsonReader{r: bufio.NewReaderSize(r, 32<<10)}
	var req wire.WriteRequest
	var seen []string
	err := d.object(func(key string) error {
		if slices.Contains(seen, key) {
			return fmt.Errorf("field %q twice", key)
		}
		seen = append(seen, key)
		switch key {
		case "request":
			var err error
			if req.Request, err = d.str(maxShortBytes); err != nil {
				return fmt.Errorf("field request: %w", err)
			}
			return nil
		case "rows":
			if d.null() {
				return nil
			}
			return d.array(func() error {
				if len(req.Rows) == lim.maxRows {
					return fmt.Errorf("more than %d rows (MaxSessionRows): %w", lim.maxRows, wire.ErrTooLarge)
				}
				row, err := d.row(lim)
				if err != nil {
					return fmt.Errorf("row %d: %w", len(req.Rows), err)
				}
				req.Rows = append(req.Rows, row)
				return nil
			})
		}
		return fmt.Errorf("unknown field %q", key)
	})
	if err == nil {
		err = d.end()
	}
	if err != nil {
		return wire.WriteRequest{}, badBody(err)
	}
	return req, nil
}
