package push

import (
	"context"
	"fmt"
	"strings"

	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/wire"
)

// noBatch is a digest no batch body has.
var noBatch = strings.Repeat("0", 64)

// acknowledged records that the server acknowledged batch b as batch
// st.Seq, advances st past it, and reports it.
func (p *pass) acknowledged(ctx context.Context, b localdb.DirtyBatch) error {
	p.st.Seq++
	p.st.Pos = b.Next
	if err := p.e.store.MarkSent(ctx, b, p.st); err != nil {
		return fmt.Errorf("push: %w", err)
	}
	p.e.counted(p.res, b)
	return nil
}

// finishWith ends the session with the answer to its last batch b, which
// committed it.
func (p *pass) finishWith(ctx context.Context, b localdb.DirtyBatch, ack wire.BatchAck) error {
	if ack.Commit == nil { // committed or not: the next push settles it
		return fmt.Errorf("push: session %s: the answer to the last batch holds no commit", p.st.Session)
	}
	if err := p.finish(ctx, *ack.Commit, p.fresh); err != nil {
		return err
	}
	p.e.counted(p.res, b)
	return nil
}

// commitEarly commits the session before every dirty row was sent (the
// server holds all it takes, or committed it already), and returns
// errCommitted: the rows left go up in a new session.
func (p *pass) commitEarly(ctx context.Context, own bool) error {
	if err := p.commit(ctx, own); err != nil {
		return err
	}
	return errCommitted
}

// commit commits the session with the batches the server acknowledged,
// apart from any batch: in the settle form, with a digest no batch has, so
// that the server drops what an earlier attempt staged from the
// acknowledged count on, which the device never recorded. Committing a
// session again is idempotent: the server answers as it did the first
// time.
//
// With own, the store records the session as one whose rows it holds as
// pushed: only for a session this engine opened and saw through itself. A
// session resumed from the database may have been pushed further by a copy
// of it (a backup restored over it), and one found already committed may
// hold rows this database never sent.
func (p *pass) commit(ctx context.Context, own bool) error {
	c, err := p.e.tr.Settle(ctx, p.device, p.st.Session, wire.LastBatch{Seq: p.st.Seq, Digest: noBatch})
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	return p.finish(ctx, c, own)
}

// settle finds out whether the last batch of the session, sent with the
// commit, was committed, when its answer was lost. The server stages that
// batch only together with the commit, so the session is either committed
// by it (the answer's Settled, checked by batch number and body digest) or
// not committed, and is then committed without it. If it is not in, its
// rows stay dirty and go up in the next session; either way settle returns
// errCommitted.
func (p *pass) settle(ctx context.Context) error {
	c, err := p.e.tr.Settle(ctx, p.device, p.st.Session, wire.LastBatch{Seq: p.st.Seq, Digest: p.st.FinalDigest})
	if err != nil {
		return fmt.Errorf("push: settle session %s: %w", p.st.Session, err)
	}
	if !c.Settled {
		if err := p.e.store.ForgetFinal(ctx); err != nil {
			return fmt.Errorf("push: %w", err)
		}
	}
	if err := p.finish(ctx, c, false); err != nil {
		return err
	}
	e := p.e
	if c.Settled && e.finalSession == p.st.Session && len(e.final.Rows) > 0 {
		e.counted(p.res, e.final) // sent by this engine: counted now it is in
	}
	e.final, e.finalSession = localdb.DirtyBatch{}, ""
	return errCommitted
}

// finish applies the server's answer to the commit of the session to the
// store, which ends the push session there, and adds it to the result.
// own is as for commit.
func (p *pass) finish(ctx context.Context, c wire.Commit, own bool) error {
	if err := p.e.store.FinishPush(ctx, c, own); err != nil {
		return fmt.Errorf("push: session %s: %w", p.st.Session, err)
	}
	p.res.Version = c.Version
	p.res.Conflicts = append(p.res.Conflicts, c.Conflicts...)
	p.res.Conflicts = append(p.res.Conflicts, p.e.store.Learned()...)
	return nil
}

// counted adds the rows of a batch the server took to res, and reports
// them.
func (e *Engine) counted(res *Result, b localdb.DirtyBatch) {
	table := b.Rows[0].Table
	res.Rows[table] += len(b.Rows)
	if e.opts.OnBatch != nil {
		e.opts.OnBatch(table, len(b.Rows))
	}
}
