package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

var errAborted = errors.New("bench: the run's time limit struck")

// runDelegation sends IQ gets in the bench namespace to the server (or --to); with the
// namespace delegated to the echo component, each is a full XEP-0355 round trip:
// client → server → component → server → client.
func runDelegation(ctx context.Context, o *Options) (*Result, error) {
	var echoes []*Echo
	defer func() {
		for _, e := range echoes {
			_ = e.Close()
		}
	}()
	if o.Component != "" {
		for range o.ComponentConns {
			c, err := DialComponent(ctx, o.Component, o.ComponentJID, o.ComponentSecret, o.Timeout)
			if err != nil {
				return nil, fmt.Errorf("bench: component %s at %s: %w", o.ComponentJID, o.Component, err)
			}
			echoes = append(echoes, StartEcho(c))
		}
	}
	base := time.Now()
	clients, err := loginAll(ctx, o, o.Client.Addr, o.Conns, 0, base)
	if err != nil {
		return nil, err
	}
	defer closeAll(clients)
	// The server asks a new component for disco nesting: let that settle so that the
	// counters below hold the load only.
	time.Sleep(50 * time.Millisecond)
	var handled0 uint64
	for _, e := range echoes {
		handled0 += e.Handled()
	}
	o.notef("delegation: %d connections logged in, window %d, starting", len(clients), o.Window)

	stop, release := newStopper(ctx, o, func() {
		for _, c := range clients {
			_ = c.Conn.SetReadDeadline(time.Now())
		}
	})
	defer release()

	workers := make([]*iqWorker, len(clients))
	for i, c := range clients {
		workers[i] = newIQWorker(o, c, i, base, stop)
	}
	start := startSpan()
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if o.Rate > 0 {
				per := o.Rate / float64(len(workers))
				w.runPaced(per, time.Duration(float64(i)/o.Rate*1e9))
			} else {
				w.run()
			}
		}()
	}
	wg.Wait()
	ran := start.end()

	var total Stats
	for _, w := range workers {
		total.Merge(&w.stats)
	}
	res := &Result{Scenario: Delegation, Server: o.Client.Addr, Conns: o.Conns, Window: o.Window, Rate: o.Rate}
	if o.Dur <= 0 {
		res.Requested = uint64(o.Count)
	}
	for _, e := range echoes {
		if n, first := e.Bad(); n > 0 {
			total.Err(ErrComponent, n, first)
		}
		res.ComponentHandled += e.Handled()
	}
	res.ComponentHandled -= handled0
	res.fill(&total, ran)
	return res, nil
}

// iqWorker drives one client connection: up to Window IQs outstanding, each matched to
// its reply by id.
type iqWorker struct {
	flow
	c         *Client
	prefix    []byte   // request up to the id's number
	suffix    []byte   // request after the id's number
	idPfx     []byte   // "q<conn>."
	unstamped []uint64 // queued, not yet written
	lastDL    time.Duration
}

func newIQWorker(o *Options, c *Client, i int, base time.Time, stop *stopper) *iqWorker {
	w := &iqWorker{flow: newFlow(o, base, stop, i), c: c}
	w.idPfx = []byte("q" + strconv.Itoa(i) + ".")
	w.prefix = append([]byte("<iq type='get' to='"), appendEscaped(nil, o.To)...)
	w.prefix = append(w.prefix, "' id='"...)
	w.prefix = append(w.prefix, w.idPfx...)
	w.suffix = append([]byte("'><query xmlns='"), appendEscaped(nil, o.Namespace)...)
	w.suffix = append(w.suffix, "'/></iq>"...)
	return w
}

func (w *iqWorker) queue() {
	seq := uint64(w.sent)
	w.sent++
	b := append(w.c.out, w.prefix...)
	b = strconv.AppendUint(b, seq, 10)
	w.c.out = append(b, w.suffix...)
	w.unstamped = append(w.unstamped, seq)
}

// flush writes the queued requests (called by the scanner before it blocks on a read).
func (w *iqWorker) flush() error {
	if w.stop.aborted.Load() {
		return errAborted
	}
	now := time.Since(w.base)
	for _, seq := range w.unstamped {
		w.pending[seq] = now
	}
	w.unstamped = w.unstamped[:0]
	if err := w.c.Flush(); err != nil {
		return err
	}
	// A read deadline per read costs a timer update: move it only now and then.
	if now-w.lastDL > w.o.Timeout/16 {
		w.lastDL = now
		_ = w.c.Conn.SetReadDeadline(w.base.Add(now + w.o.Timeout))
	}
	return nil
}

func (w *iqWorker) run() {
	w.c.Sc.BeforeRead = w.flush
	defer func() { w.c.Sc.BeforeRead = nil }()
	for i := 0; i < w.o.Window && w.canSend(); i++ {
		w.queue()
	}
	for len(w.pending)+len(w.unstamped) > 0 {
		st, err := w.c.Sc.Next()
		if err != nil {
			w.failAll(err)
			break
		}
		if w.reply(st) && w.canSend() {
			w.queue()
		}
	}
	w.notSent()
}

// failAll counts what is outstanding when the connection can no longer be read.
func (w *iqWorker) failAll(err error) {
	n := uint64(len(w.pending) + len(w.unstamped))
	var ne net.Error
	switch {
	case w.stop.aborted.Load():
		w.stats.Err(ErrTimeout, n, "the run's time limit struck")
	case errors.As(err, &ne) && ne.Timeout():
		w.stats.Err(ErrTimeout, n, fmt.Sprintf("no reply within %v", w.o.Timeout))
	default:
		w.stats.Err(ErrDisconnected, n, err.Error())
	}
	clear(w.pending)
	w.unstamped = w.unstamped[:0]
}

// reply checks one incoming stanza; it reports whether it settled a request.
func (w *iqWorker) reply(st *Stanza) bool {
	if string(st.Name) != "iq" {
		return false
	}
	isReply := st.Type.Is("result") || st.Type.Is("error")
	id := st.ID.Val
	if !bytes.HasPrefix(id, w.idPfx) {
		if isReply {
			w.stats.Err(ErrUnexpected, 1, fmt.Sprintf("%.300s", st.Raw))
		} else {
			w.answerServer(st)
		}
		return false
	}
	seq, err := strconv.ParseUint(string(id[len(w.idPfx):]), 10, 64)
	if err != nil {
		w.stats.Err(ErrUnexpected, 1, fmt.Sprintf("%.300s", st.Raw))
		return false
	}
	t0, ok := w.pending[seq]
	if !ok {
		if seq < uint64(w.sent) {
			w.stats.Err(ErrDuplicate, 1, fmt.Sprintf("%.300s", st.Raw))
		} else {
			w.stats.Err(ErrUnexpected, 1, fmt.Sprintf("%.300s", st.Raw))
		}
		return false
	}
	delete(w.pending, seq)
	switch {
	case st.Type.Is("result") && (len(st.From.Val) == 0 || st.From.Is(w.o.To)):
		w.stats.Ops++
		w.stats.Lat.Record(w.c.tr.at - t0)
	case st.Type.Is("error"):
		w.stats.Err(ErrErrorReply, 1, fmt.Sprintf("%.300s", st.Raw))
	default:
		w.stats.Err(ErrWrongReply, 1, fmt.Sprintf("%.300s", st.Raw))
	}
	return true
}

// answerServer refuses requests the server sends the client (a polite client answers
// every IQ get/set).
func (w *iqWorker) answerServer(st *Stanza) {
	if !st.Type.Is("get") && !st.Type.Is("set") {
		return
	}
	b := append(w.c.out, "<iq type='error'"...)
	if len(st.From.Val) > 0 {
		b = appendAttr(b, "to", st.From)
	}
	b = appendAttr(b, "id", st.ID)
	w.c.out = append(b, "><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"...)
}

// runPaced sends at a fixed rate (open loop, still capped by the window) from this
// goroutine while another one reads the replies.
func (w *iqWorker) runPaced(rate float64, offset time.Duration) {
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			st, err := w.c.Sc.Next()
			if err != nil {
				w.readFailed(err)
				return
			}
			w.mu.Lock()
			settled := w.reply(st)
			w.mu.Unlock()
			if settled {
				w.signal()
			}
		}
	}()
	w.sendPaced(rate, offset, func(b []byte, seq uint64) []byte {
		b = append(b, w.prefix...)
		b = strconv.AppendUint(b, seq, 10)
		return append(b, w.suffix...)
	}, func() []byte {
		out := w.c.out // server requests the reader answered
		w.c.out = nil
		return out
	}, func(b []byte) error {
		_, err := w.c.Conn.Write(b)
		return err
	})
	_ = w.c.Conn.SetReadDeadline(time.Now())
	<-readerDone
	_ = w.c.Conn.SetReadDeadline(time.Time{})
}
