package push

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/wire"
)

// push sends the dirty rows from the stored position on, in the stored
// session or a new one, and commits the session.
//
// A push takes as few requests as it can: the first batch opens the
// session (wire.BatchOpen) and the last one commits it (wire.BatchCommit),
// so that a push of one batch is one request. The last batch is recorded
// as sent before it goes (PushState.Final): when its answer is lost, the
// next push asks the server whether it was committed (settle) instead of
// sending rows that may have changed since.
func (e *Engine) push(ctx context.Context, res *Result) error {
	st, err := e.store.PushState(ctx)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	p := &pass{e: e, res: res, device: e.store.DeviceID(), st: st, fresh: st.Session == ""}
	if st.Final {
		return p.settle(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	p.rd = newReader(e.store, e.opts.BatchSize)
	defer func() {
		cancel()
		p.rd.wait() // never leave a read running on the store
	}()
	b, err := p.rd.at(ctx, st.Pos)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	if len(b.Rows) == 0 {
		if st.Session == "" {
			return nil // nothing to push
		}
		// Every row went up in batches acknowledged before (a push resumed
		// after a lost commit answer): commit apart.
		return p.commit(ctx, p.fresh)
	}
	p.newRun()
	return p.run(ctx, b)
}

// pass is one call of Engine.push: the session's state as the store holds
// it, and what the pass needs to send the session's batches.
type pass struct {
	e      *Engine
	res    *Result
	device string
	st     localdb.PushState
	// fresh is set when the session is one this pass made, rather than
	// one resumed from the store: see commit's own.
	fresh   bool
	attempt int64 // numbers the run's sends (wire.BatchAttempt); 0 until its first send takes one
	base    int   // the batches acknowledged when the run began (wire.BatchBase)
	begun   bool  // the run's first batch is acknowledged: see window
	runs    bool  // the server keeps runs apart (wire.BatchAck.Runs), as its first answer of the push said
	rd      *reader
	flight  []*sending // on the wire, in batch order: flight[i] is batch st.Seq+i
}

// outcome is what the answer to a batch leaves to do.
type outcome int

const (
	acked     outcome = iota // the server took the batch
	halve                    // too large: send it again, halved
	full                     // the session is full: commit it, go on in a new one
	committed                // the session was committed already
	failed                   // the push ends with the error
)

// outcomeOf classifies the error of sending a batch (nil when the server
// took it): the batch number seq of a session, of size rows, the last one
// when last (sent with the commit).
func outcomeOf(err error, seq, size int, last bool) outcome {
	switch {
	case err == nil:
		return acked
	case last && !errors.Is(err, wire.ErrRefused):
		return failed // committed or not: the next push settles it
	case errors.Is(err, wire.ErrSessionFull) && seq > 0:
		return full // the server bounds a session
	case (errors.Is(err, wire.ErrTooLarge) || errors.Is(err, wire.ErrSessionFull)) && size > 1:
		return halve
	case errors.Is(err, wire.ErrConflict):
		// Committed already: its answer was lost after a commit, and rows
		// edited since are being sent in the same session (or a copy of
		// this database, restored from a backup, pushed it). A first
		// batch may instead have met the open-session limit.
		return committed
	}
	return failed
}

// run sends batch b and those after it, and commits the session: up to
// Options.InFlight batches on the wire at a time (see flight.go).
func (p *pass) run(ctx context.Context, b localdb.DirtyBatch) error {
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		p.waitAll() // never leave a send running
	}()
	for {
		after, err := p.rd.next(ctx)
		if err != nil {
			return fmt.Errorf("push: %w", err)
		}
		last := len(after.Rows) == 0
		var ack wire.BatchAck
		out := acked
		if last { // alone, once every batch before it is acknowledged
			if out, err = p.landAll(ctx); out == acked {
				ack, out, err = p.send(ctx, b, last)
			}
		} else {
			if err := p.prepare(ctx, b, false); err != nil {
				return err
			}
			p.flight = append(p.flight, p.start(ctx, b, p.st.Seq+len(p.flight)))
			for out == acked && len(p.flight) >= p.window() {
				out, err = p.land(ctx)
			}
			if out == acked {
				b = after
				continue
			}
		}
		switch out {
		case acked:
		case halve: // in a new run: what this one staged from here on goes
			p.rd.halve()
			p.newRun()
			if b, err = p.rd.at(ctx, p.st.Pos); err != nil {
				return fmt.Errorf("push: %w", err)
			}
			continue
		case full: // commit what the server holds, send the rest in a new session
			return p.commitEarly(ctx, p.fresh)
		case committed:
			cerr := p.commitEarly(ctx, false)
			if p.st.Seq == 0 && errors.Is(cerr, wire.ErrNotFound) { // the open-session limit
				return err
			}
			return cerr
		default:
			return err
		}
		return p.finishWith(ctx, b, ack)
	}
}

// send sends batch b as the session's next, opening the session with the
// first batch and committing it with the last, and says what is left to
// do.
func (p *pass) send(ctx context.Context, b localdb.DirtyBatch, last bool) (wire.BatchAck, outcome, error) {
	if err := p.prepare(ctx, b, last); err != nil {
		return wire.BatchAck{}, failed, err
	}
	ack, err := p.e.tr.SendBatch(ctx, p.device, p.st.Session, p.st.Seq, b.Rows, p.params(p.st.Seq, last))
	if err == nil {
		return ack, acked, nil
	}
	if last && errors.Is(err, wire.ErrRefused) {
		// Refused whole: the batch was not committed.
		if ferr := p.e.store.ForgetFinal(ctx); ferr != nil {
			return ack, failed, fmt.Errorf("push: %w", ferr)
		}
	}
	return ack, outcomeOf(err, p.st.Seq, p.rd.size, last), fmt.Errorf("push: session %s: %w", p.st.Session, err)
}

// prepare records, before the server hears of them, a new session and
// the last batch b, with the digest the server makes of its body (see
// settle).
func (p *pass) prepare(ctx context.Context, b localdb.DirtyBatch, last bool) error {
	if p.st.Session == "" {
		// A retry after a lost answer finds the same session instead of
		// leaving one behind (G3). The last batch's record, below, stores
		// the session with it (a push of one batch: one write).
		p.st.Session = uuid.NewString()
		if !last {
			if err := p.e.store.BeginPush(ctx, p.st.Session); err != nil {
				return fmt.Errorf("push: %w", err)
			}
		}
	}
	if !last {
		if p.attempt == 0 { // the run's first send
			n, err := p.e.store.NextAttempt(ctx)
			if err != nil {
				return fmt.Errorf("push: %w", err)
			}
			p.attempt = n
		}
		return nil
	}
	body, err := wire.AppendBatch(nil, b.Rows)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	sum := sha256.Sum256(body)
	fin := p.st
	fin.Final, fin.FinalDigest = true, hex.EncodeToString(sum[:])
	if p.attempt == 0 { // the run's first send: its attempt number with the record
		n, err := p.e.store.MarkFinal(ctx, b, fin)
		if err != nil {
			return fmt.Errorf("push: %w", err)
		}
		p.attempt = n
	} else if err := p.e.store.MarkSent(ctx, b, fin); err != nil {
		return fmt.Errorf("push: %w", err)
	}
	p.e.final, p.e.finalSession = b, p.st.Session
	return nil
}
