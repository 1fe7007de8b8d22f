package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/tethersync/tether/wire"
)

// seqRE is a batch number: digits, without sign or leading zeros.
var seqRE = regexp.MustCompile(`^(0|[1-9][0-9]{0,8})$`)

// openSession opens a push session (wire.Session): the first batch of a
// push may open it instead (wire.BatchOpen).
func (s *Server) openSession(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error) {
	device, err := s.device(ctx, p, r)
	if err != nil {
		return nil, err
	}
	var req wire.Session
	if err := s.decode(w, r, &req); err != nil {
		return nil, err
	}
	if req.Session != "" && !deviceRE.MatchString(req.Session) {
		return nil, fmt.Errorf("malformed session id %q: want %s: %w", clip(req.Session), wire.SessionIDFormat, wire.ErrBadRequest)
	}
	id, err := s.store.OpenSession(ctx, p, device, req.Session, s.opts.Limits)
	if err != nil {
		return nil, err
	}
	return wire.Session{Session: id}, nil
}

// stageBatch stages a pushed batch, opening its session first and
// committing it after when the request says so (wire.BatchParams).
func (s *Server) stageBatch(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error) {
	device, err := s.device(ctx, p, r)
	if err != nil {
		return nil, err
	}
	seq, err := strconv.Atoi(r.PathValue("seq"))
	if err != nil || !seqRE.MatchString(r.PathValue("seq")) {
		return nil, fmt.Errorf("malformed batch number %q: want 0 to 999999999 without sign or leading zeros: %w", clip(r.PathValue("seq")), wire.ErrBadRequest)
	}
	params, err := batchParams(r)
	if err != nil {
		return nil, err
	}
	session := r.PathValue("session")
	if params.Open && !deviceRE.MatchString(session) {
		return nil, fmt.Errorf("malformed session id %q: want %s: %w", clip(session), wire.SessionIDFormat, wire.ErrBadRequest)
	}
	// The digest of a batch that commits tells the same request delivered
	// twice (a proxy that retries) from another (Store.Push).
	var digest hash.Hash
	if params.Commit {
		digest = sha256.New()
	}
	b, err := s.decodeBatch(w, r, digest)
	if err != nil {
		return nil, err
	}
	if err := validateRows(s.store.Schema(), b.Rows, stamping{device: device, now: s.opts.Now(), skew: s.opts.MaxClockSkew}); err != nil {
		return nil, fmt.Errorf("batch %d: %w", seq, err)
	}
	if len(b.Rows) > s.opts.MaxBatchRows {
		return nil, fmt.Errorf("batch %d has %d rows, more than the limit of %d: %w", seq, len(b.Rows), s.opts.MaxBatchRows, wire.ErrTooLarge)
	}
	o := PushOptions{Open: params.Open, Attempt: params.Attempt, Base: seq, Resolve: s.resolve, Limits: s.opts.Limits}
	if params.Base >= 0 && params.Base < seq {
		o.Base = params.Base
	}
	if params.Commit {
		o.Commit = &LastBatch{Seq: seq, Digest: hex.EncodeToString(digest.Sum(nil))}
	}
	c, err := s.store.Push(ctx, p, device, session, seq, b.Rows, o)
	if err != nil {
		return nil, err
	}
	s.observer().RowsPushed(p.Tenant, len(b.Rows))
	return wire.BatchAck{Seq: seq, Staged: len(b.Rows), Commit: c, Runs: true}, nil
}

// batchParams reads a batch's query parameters: open and commit, each
// absent or "1", attempt, a positive number, and base, a batch number
// (absent: Base is -1).
func batchParams(r *http.Request) (wire.BatchParams, error) {
	p := wire.BatchParams{Base: -1}
	for name, vals := range r.URL.Query() {
		if name == wire.BatchAttempt {
			n, err := strconv.ParseInt(strings.Join(vals, ","), 10, 64)
			if err != nil || n < 1 || !seqRE.MatchString(vals[0]) {
				return p, fmt.Errorf("batch parameter %s=%q: want a positive number once: %w", clip(name), clip(strings.Join(vals, ",")), wire.ErrBadRequest)
			}
			p.Attempt = n
			continue
		}
		if name == wire.BatchBase {
			n, err := strconv.Atoi(strings.Join(vals, ","))
			if err != nil || n < 0 || !seqRE.MatchString(vals[0]) {
				return p, fmt.Errorf("batch parameter %s=%q: want a batch number once: %w", clip(name), clip(strings.Join(vals, ",")), wire.ErrBadRequest)
			}
			p.Base = n
			continue
		}
		if len(vals) != 1 || vals[0] != "1" {
			return p, fmt.Errorf("batch parameter %s=%q: want %s=1 once: %w", clip(name), clip(strings.Join(vals, ",")), clip(name), wire.ErrBadRequest)
		}
		switch name {
		case wire.BatchOpen:
			p.Open = true
		case wire.BatchCommit:
			p.Commit = true
		default:
			return p, fmt.Errorf("unknown batch parameter %q (want %s, %s, %s or %s): %w", clip(name), wire.BatchOpen, wire.BatchCommit, wire.BatchAttempt, wire.BatchBase, wire.ErrBadRequest)
		}
	}
	return p, nil
}
