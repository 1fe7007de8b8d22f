package push

import (
	"context"
	"fmt"

	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/wire"
)

// Two batches on the wire
//
// A run of sends (a pass, or the sends after a halving) numbers its
// batches with its attempt and its base, the batches acknowledged when it
// began (wire.BatchAttempt, wire.BatchBase). Its first batch goes alone:
// it opens the session or finds the size the server takes. Once it is
// acknowledged by a server that keeps runs apart (wire.BatchAck.Runs; an
// earlier server gets one batch at a time, without wire.BatchBase), up to
// Options.InFlight batches are on the wire at a time,
// in batch order, and their acknowledgements are recorded in that order.
// The last batch, which commits the session, goes alone once every batch
// before it is acknowledged.
//
// When a batch on the wire fails, the batches sent after it are waited
// for and their answers dropped: none is recorded as acknowledged, even
// one the server took. The failed batch's outcome then decides as it
// does for a batch sent alone: the push ends (the next one begins a new
// run at the acknowledged position, whose first batch the server takes as
// the end of this run: what it staged from there on is dropped), a
// halving begins a new run here, and a full or committed session is
// committed with the acknowledged batches only (a settle at the
// acknowledged count, which drops the batches after it). No row is lost
// (each unacknowledged row stays dirty and goes again) and none is
// committed twice or out of order (the server takes a commit only of
// batches 0..N, each of the newest run or acknowledged before it).

// sending is a batch on the wire.
type sending struct {
	batch localdb.DirtyBatch
	seq   int
	done  chan struct{} // closed once ack and err are set
	ack   wire.BatchAck
	err   error
}

// start sends batch b, not the last, as batch seq of the session in the
// background.
func (p *pass) start(ctx context.Context, b localdb.DirtyBatch, seq int) *sending {
	f := &sending{batch: b, seq: seq, done: make(chan struct{})}
	params := p.params(seq, false)
	session := p.st.Session
	go func() {
		defer close(f.done)
		f.ack, f.err = p.e.tr.SendBatch(ctx, p.device, session, seq, b.Rows, params)
	}()
	return f
}

// params are the query parameters of batch seq of the pass's run.
func (p *pass) params(seq int, last bool) wire.BatchParams {
	base := p.base
	if !p.runs {
		base = -1 // not sent: a server before run generations refuses it
	}
	return wire.BatchParams{Open: seq == 0, Commit: last, Attempt: p.attempt, Base: base}
}

// window is the number of batches the run may have on the wire now: one
// until its first batch is acknowledged.
func (p *pass) window() int {
	if !p.begun || !p.runs {
		return 1 // a server that does not keep runs apart gets one at a time
	}
	return p.e.opts.InFlight
}

// land waits for the oldest batch on the wire and records its
// acknowledgement. When it failed, land waits for the others, records
// none of them, and returns the failure's outcome.
func (p *pass) land(ctx context.Context) (outcome, error) {
	f := p.flight[0]
	<-f.done
	if f.err != nil {
		for _, g := range p.flight[1:] {
			<-g.done
		}
		p.flight = nil
		return outcomeOf(f.err, f.seq, p.rd.size, false), fmt.Errorf("push: session %s: %w", p.st.Session, f.err)
	}
	p.flight = p.flight[1:]
	p.begun = true
	p.runs = p.runs || f.ack.Runs
	if err := p.acknowledged(ctx, f.batch); err != nil {
		return failed, err
	}
	return acked, nil
}

// landAll lands every batch on the wire, in order, until one fails.
func (p *pass) landAll(ctx context.Context) (outcome, error) {
	for len(p.flight) > 0 {
		if out, err := p.land(ctx); out != acked {
			return out, err
		}
	}
	return acked, nil
}

// waitAll waits for the batches on the wire, recording nothing: no send
// is left running once the pass is over.
func (p *pass) waitAll() {
	for _, f := range p.flight {
		<-f.done
	}
	p.flight = nil
}

// newRun begins a new run of sends at the acknowledged position. Its
// attempt number is taken with its first send (see prepare): a push of
// one batch stores it with the batch's record, in one write.
func (p *pass) newRun() {
	p.attempt, p.base, p.begun = 0, p.st.Seq, false
}
