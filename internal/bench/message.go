package bench

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// runMessage sends chat messages from Conns senders (on the server) to Conns receivers
// (on the target, by default the same server), each sender to its own receiver's full
// JID. A sender keeps at most Window messages in flight: one is settled when its receiver
// gets it (latency is one way, measured on one clock) or when the sender gets an error
// bounce for it.
func runMessage(ctx context.Context, o *Options) (*Result, error) {
	base := time.Now()
	senders, err := loginAll(ctx, o, o.Client.Addr, o.Conns, 0, base)
	if err != nil {
		return nil, err
	}
	defer closeAll(senders)
	receivers, err := loginAll(ctx, o, o.Target, o.Conns, o.Conns, base)
	if err != nil {
		return nil, err
	}
	defer closeAll(receivers)
	// A ping round trip on each receiver: the server has handled its bind completely once
	// it answers the next stanza on that stream. (Switchboard sends the bind result before
	// it registers the session, so a message racing the bind result can bounce.)
	for _, c := range receivers {
		if err := ping(c, o); err != nil {
			return nil, fmt.Errorf("bench: receiver %s: %w", c.JID, err)
		}
	}
	o.notef("message: %d pairs logged in, window %d, starting", o.Conns, o.Window)

	stop, release := newStopper(ctx, o, func() {
		for i := range senders {
			_ = senders[i].Conn.SetReadDeadline(time.Now())
			_ = receivers[i].Conn.SetReadDeadline(time.Now())
		}
	})
	defer release()
	pairs := make([]*msgPair, o.Conns)
	for i := range pairs {
		pairs[i] = newMsgPair(o, senders[i], receivers[i], i, base, stop)
	}
	start := startSpan()
	var wg sync.WaitGroup
	for _, p := range pairs {
		wg.Add(1)
		go func() { defer wg.Done(); p.run(ctx) }()
	}
	wg.Wait()
	ran := start.end()
	var total Stats
	for _, p := range pairs {
		total.Merge(&p.stats)
	}
	res := &Result{Scenario: Message, Server: o.Client.Addr, Conns: o.Conns, Window: o.Window}
	if o.Target != o.Client.Addr {
		res.Target = o.Target
	}
	if o.Dur <= 0 {
		res.Requested = uint64(o.Count)
	}
	res.fill(&total, ran)
	return res, nil
}

type msgPair struct {
	flow
	s, r   *Client
	idPfx  []byte
	prefix []byte
	suffix []byte
	tokens chan struct{} // one per free window slot
}

func newMsgPair(o *Options, s, r *Client, i int, base time.Time, stop *stopper) *msgPair {
	p := &msgPair{flow: newFlow(o, base, stop, i), s: s, r: r, tokens: make(chan struct{}, o.Window)}
	for range o.Window {
		p.tokens <- struct{}{}
	}
	p.idPfx = []byte("m" + strconv.Itoa(i) + ".")
	p.prefix = append([]byte("<message type='chat' to='"), appendEscaped(nil, r.JID)...)
	p.prefix = append(p.prefix, "' id='"...)
	p.prefix = append(p.prefix, p.idPfx...)
	p.suffix = []byte("'><body>switchboard bench</body></message>")
	return p
}

func (p *msgPair) run(ctx context.Context) {
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); p.read(p.r, true) }()
	go func() { defer readers.Done(); p.read(p.s, false) }()

	timer := time.NewTimer(p.o.Timeout)
	defer timer.Stop()
	// wait takes one free slot, blocking at most the timeout.
	wait := func() bool {
		select {
		case <-p.tokens:
			return true
		default:
		}
		timer.Reset(p.o.Timeout)
		select {
		case <-p.tokens:
			return true
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
	var buf []byte
	for p.canSend() {
		if !wait() {
			break
		}
		k := int64(1)
	more:
		for p.n < 0 || p.sent+k < p.n {
			select {
			case <-p.tokens:
				k++
			default:
				break more
			}
		}
		buf = buf[:0]
		now := time.Since(p.base)
		p.mu.Lock()
		if p.readErr != nil {
			p.mu.Unlock()
			break
		}
		for range k {
			seq := uint64(p.sent)
			p.sent++
			buf = append(buf, p.prefix...)
			buf = strconv.AppendUint(buf, seq, 10)
			buf = append(buf, p.suffix...)
			p.pending[seq] = now
		}
		p.mu.Unlock()
		if _, err := p.s.Conn.Write(buf); err != nil {
			p.mu.Lock()
			p.readErr = err
			p.mu.Unlock()
			break
		}
	}
	// Drain: every slot back, as long as they keep coming.
	for {
		p.mu.Lock()
		left, rerr := len(p.pending), p.readErr
		p.mu.Unlock()
		if left == 0 || rerr != nil || !wait() {
			break
		}
	}
	p.finish("not delivered")
	_ = p.s.Conn.SetReadDeadline(time.Now())
	_ = p.r.Conn.SetReadDeadline(time.Now())
	readers.Wait()
	_ = p.s.Conn.SetReadDeadline(time.Time{})
	_ = p.r.Conn.SetReadDeadline(time.Time{})
}

// read handles what one side of the pair receives: the receiver's messages settle
// requests; on the sender's side only error bounces do.
func (p *msgPair) read(c *Client, receiver bool) {
	for {
		st, err := c.Sc.Next()
		if err != nil {
			p.mu.Lock()
			if !p.done && p.readErr == nil {
				p.readErr = err
			}
			p.mu.Unlock()
			return
		}
		if string(st.Name) != "message" {
			continue
		}
		id := st.ID.Val
		p.mu.Lock()
		settled := false
		if !bytes.HasPrefix(id, p.idPfx) {
			p.stats.Err(ErrUnexpected, 1, fmt.Sprintf("%.300s", st.Raw))
		} else if seq, err := strconv.ParseUint(string(id[len(p.idPfx):]), 10, 64); err != nil {
			p.stats.Err(ErrUnexpected, 1, fmt.Sprintf("%.300s", st.Raw))
		} else if t0, ok := p.pending[seq]; !ok {
			if seq < uint64(p.sent) {
				p.stats.Err(ErrDuplicate, 1, fmt.Sprintf("%.300s", st.Raw))
			} else {
				p.stats.Err(ErrUnexpected, 1, fmt.Sprintf("%.300s", st.Raw))
			}
		} else {
			delete(p.pending, seq)
			settled = true
			switch {
			case st.Type.Is("error"):
				p.stats.Err(ErrErrorReply, 1, fmt.Sprintf("%.300s", st.Raw))
			case !receiver:
				p.stats.Err(ErrWrongReply, 1, fmt.Sprintf("the sender got its own message back: %.300s", st.Raw))
			default:
				p.stats.Ops++
				p.stats.Lat.Record(c.tr.at - t0)
			}
		}
		p.mu.Unlock()
		if settled {
			select {
			case p.tokens <- struct{}{}:
			default:
			}
		}
	}
}
