package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Echo is the bench's managing entity: an XEP-0114 component that answers every IQ the
// server forwards to it (XEP-0355) with an empty result, disco#info nesting queries with
// an empty disco#info, and plain IQs addressed to it with an empty result. Its replies
// are written in batches: everything answered from one read goes out in one write.
type Echo struct {
	c   *Component
	out []byte

	handled atomic.Uint64 // delegated IQs answered
	plain   atomic.Uint64 // IQs addressed to the component itself
	disco   atomic.Uint64 // disco#info (nesting) queries answered

	mu       sync.Mutex
	bad      uint64
	firstBad string

	done chan struct{}
	err  error

	// delay: answers are written this long after the read that brought their requests
	// (StartDelayedEcho), by a writer of their own; 0: at once.
	closing atomic.Bool // CloseClean

	delay   time.Duration
	delayed chan delayedWrite
	written chan struct{} // closed when the delayed writer is done
}

type delayedWrite struct {
	b   []byte
	due time.Time
}

// StartEcho runs the component's reading loop in its own goroutine.
func StartEcho(c *Component) *Echo { return StartDelayedEcho(c, 0) }

// StartDelayedEcho is StartEcho for a component that takes delay to answer each request,
// as a real one does (so that some are always waiting for it). The answers keep their
// order; at most 64 reads' worth wait to be written, then the component stops reading.
func StartDelayedEcho(c *Component, delay time.Duration) *Echo {
	e := &Echo{c: c, done: make(chan struct{}), delay: delay}
	c.Sc.BeforeRead = e.flush
	if delay > 0 {
		e.delayed = make(chan delayedWrite, 64)
		e.written = make(chan struct{})
		go e.writeDelayed()
	}
	go e.run()
	return e
}

// writeDelayed writes each batch of answers when it is due.
func (e *Echo) writeDelayed() {
	defer close(e.written)
	failed := false
	for w := range e.delayed {
		if failed {
			continue
		}
		time.Sleep(time.Until(w.due))
		if _, err := e.c.Conn.Write(w.b); err != nil {
			failed = true // the stream is gone: what waits is dropped with it
		}
	}
}

// Done is closed when the component's stream has ended (Close, or the server's end).
func (e *Echo) Done() <-chan struct{} { return e.done }

// Handled is the number of delegated IQs answered so far.
func (e *Echo) Handled() uint64 { return e.handled.Load() }

// Plain is the number of IQs addressed to the component that it answered.
func (e *Echo) Plain() uint64 { return e.plain.Load() }

// Bad returns how many stanzas the component could not make sense of, and the first.
func (e *Echo) Bad() (uint64, string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.bad, e.firstBad
}

// Close ends the component's stream and waits for its loop.
func (e *Echo) Close() error {
	_ = e.c.Conn.Close()
	<-e.done
	if errors.Is(e.err, net.ErrClosed) || errors.Is(e.err, ErrStreamEnd) {
		return nil
	}
	return e.err
}

func (e *Echo) flush() error {
	if len(e.out) == 0 {
		return nil
	}
	if e.delay > 0 {
		e.delayed <- delayedWrite{b: append([]byte(nil), e.out...), due: time.Now().Add(e.delay)}
		e.out = e.out[:0]
		return nil
	}
	_, err := e.c.Conn.Write(e.out)
	if cap(e.out) > 1<<20 {
		e.out = nil
	} else {
		e.out = e.out[:0]
	}
	return err
}

func (e *Echo) run() {
	defer close(e.done)
	defer func() {
		if e.delayed != nil { // not already closed by a clean close
			close(e.delayed)
			<-e.written
		}
	}()
	for !e.closing.Load() {
		st, err := e.c.Sc.Next()
		if err != nil {
			if !e.closing.Load() {
				e.err = err
				return
			}
			break
		}
		e.handle(st)
	}
	// CloseClean: what was read is answered, then the closing tag goes.
	e.err = e.flush()
	if e.delayed != nil {
		close(e.delayed)
		<-e.written
		e.delayed = nil
	}
	if e.err == nil {
		_, e.err = io.WriteString(e.c.Conn, "</stream:stream>")
	}
}

// CloseClean ends the stream as a component that stops does: it reads nothing more,
// writes the answers to all it read, then its closing tag, and closes the connection
// once the server has closed its side (or after a second). What the server sent that it
// did not read, it never acted on.
func (e *Echo) CloseClean() error {
	e.closing.Store(true)
	_ = e.c.Conn.SetReadDeadline(time.Now()) // a read under way ends
	<-e.done
	if e.err != nil {
		_ = e.c.Conn.Close()
		return e.err
	}
	_ = e.c.Conn.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.Copy(io.Discard, e.c.Conn) // until the server closes
	return e.c.Conn.Close()
}

func (e *Echo) badStanza(why string, raw []byte) {
	e.mu.Lock()
	e.bad++
	if e.firstBad == "" {
		e.firstBad = fmt.Sprintf("%s: %.300s", why, raw)
	}
	e.mu.Unlock()
}

func (e *Echo) handle(st *Stanza) {
	if string(st.Name) != "iq" {
		return // delegation advertisements and the like
	}
	if !st.Type.Is("get") && !st.Type.Is("set") {
		return
	}
	b := e.out
	switch {
	case string(st.Child) == "delegation" && (st.ChildNS.Is(nsDelegV2) || st.ChildNS.Is(nsDelegV1)):
		inner, ok := FindElement(st.Raw, 3) // iq > delegation > forwarded > iq
		if !ok || string(inner.Name) != "iq" {
			e.badStanza("forwarded IQ without an inner <iq/>", st.Raw)
			b = append(b, "<iq type='error'"...)
			b = appendAttr(b, "to", st.From)
			b = appendAttr(b, "from", st.To)
			b = appendAttr(b, "id", st.ID)
			b = append(b, "><error type='modify'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"...)
			break
		}
		b = append(b, "<iq type='result'"...)
		b = appendAttr(b, "to", st.From)
		b = appendAttr(b, "from", st.To)
		b = appendAttr(b, "id", st.ID)
		b = append(b, "><delegation xmlns='"...)
		b = append(b, st.ChildNS.Val...)
		b = append(b, "'><forwarded xmlns='"+nsForward+"'><iq xmlns='"+nsClient+"' type='result'"...)
		b = appendAttr(b, "id", inner.ID)
		b = appendAttr(b, "to", inner.From)
		b = append(b, "/></forwarded></delegation></iq>"...)
		e.handled.Add(1)
	case string(st.Child) == "query" && st.ChildNS.Is(nsDiscoInfo):
		q, _ := FindElement(st.Raw, 1)
		b = append(b, "<iq type='result'"...)
		b = appendAttr(b, "to", st.From)
		b = appendAttr(b, "from", st.To)
		b = appendAttr(b, "id", st.ID)
		b = append(b, "><query xmlns='"+nsDiscoInfo+"'"...)
		if len(q.Node.Val) > 0 {
			b = appendAttr(b, "node", q.Node)
		}
		b = append(b, "/></iq>"...)
		e.disco.Add(1)
	default:
		b = append(b, "<iq type='result'"...)
		b = appendAttr(b, "to", st.From)
		b = appendAttr(b, "from", st.To)
		b = appendAttr(b, "id", st.ID)
		b = append(b, "/>"...)
		e.plain.Add(1)
	}
	e.out = b
}
