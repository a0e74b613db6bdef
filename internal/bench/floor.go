package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// The floor scenario measures the machine, not a server: the same traffic as delegation
// (connections, window, rate, count or duration) through four loopback TCP hops inside
// the tool, client → relay → echo → relay → client, with no XML, no TLS and no work
// per message beyond routing a fixed-size record. Its latency is the least any router
// could show on this machine for that load shape: the system calls, wakeups and
// scheduling of two sockets each way. Quote it beside a server's figures from the same
// run: on a shared VM it moves from hour to hour.

// floorRec is one request or reply: the client connection's index, the sequence
// number, and padding to about the size of a small stanza's header.
const floorRec = 64

// runFloor runs the floor scenario; it needs no server.
func runFloor(ctx context.Context, o *Options) (*Result, error) {
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: floor: %w", err)
	}
	defer rl.Close()
	el, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: floor: %w", err)
	}
	defer el.Close()

	var conns []net.Conn // everything to close at the end
	var cmu sync.Mutex
	track := func(c net.Conn) {
		cmu.Lock()
		conns = append(conns, c)
		cmu.Unlock()
	}
	defer func() {
		cmu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		cmu.Unlock()
	}()

	// The echo: writes back whatever it reads.
	go func() {
		c, err := el.Accept()
		if err != nil {
			return
		}
		track(c)
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	up, err := net.Dial("tcp", el.Addr().String())
	if err != nil {
		return nil, fmt.Errorf("bench: floor: %w", err)
	}
	track(up)
	rel := &floorRelay{up: &lockedConn{c: up}, down: make([]*lockedConn, o.Conns)}

	// Clients connect and say their index; the relay reads it and serves the connection.
	clients := make([]net.Conn, o.Conns)
	for i := range clients {
		c, err := net.Dial("tcp", rl.Addr().String())
		if err != nil {
			return nil, fmt.Errorf("bench: floor: %w", err)
		}
		track(c)
		clients[i] = c
		var hello [4]byte
		binary.LittleEndian.PutUint32(hello[:], uint32(i))
		if _, err := c.Write(hello[:]); err != nil {
			return nil, fmt.Errorf("bench: floor: %w", err)
		}
		s, err := rl.Accept()
		if err != nil {
			return nil, fmt.Errorf("bench: floor: %w", err)
		}
		track(s)
		if _, err := io.ReadFull(s, hello[:]); err != nil {
			return nil, fmt.Errorf("bench: floor: %w", err)
		}
		rel.down[binary.LittleEndian.Uint32(hello[:])] = &lockedConn{c: s}
	}
	for _, d := range rel.down {
		go rel.fromClient(d.c)
	}
	go rel.fromEcho()

	base := time.Now()
	stop, release := newStopper(ctx, o, func() {
		for _, c := range clients {
			_ = c.SetReadDeadline(time.Now())
		}
	})
	defer release()
	workers := make([]*floorWorker, len(clients))
	for i, c := range clients {
		workers[i] = &floorWorker{flow: newFlow(o, base, stop, i), c: c, idx: uint32(i)}
	}
	start := startSpan()
	var wg sync.WaitGroup
	var rate float64 // per connection
	if o.Rate > 0 {
		rate = o.Rate / float64(len(workers))
	}
	for i, w := range workers {
		wg.Go(func() { w.run(rate, time.Duration(float64(i)/max(o.Rate, 1)*1e9)) })
	}
	wg.Wait()
	ran := start.end()
	var total Stats
	for _, w := range workers {
		total.Merge(&w.stats)
	}
	res := &Result{Scenario: Floor, Server: "(none: four loopback hops inside the tool)", Conns: o.Conns, Window: o.Window, Rate: o.Rate}
	if o.Dur <= 0 {
		res.Requested = uint64(o.Count)
	}
	res.fill(&total, ran)
	return res, nil
}

type lockedConn struct {
	mu sync.Mutex
	c  net.Conn
}

func (l *lockedConn) write(b []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := l.c.Write(b)
	return err
}

// floorRelay forwards whole records from every client connection to the echo, and the
// echo's records back to the connection their index names; what one read brings for a
// connection goes out in one write, as a router's write coalescing would.
type floorRelay struct {
	up   *lockedConn
	down []*lockedConn
}

func (r *floorRelay) fromClient(c net.Conn) {
	_ = readRecords(c, r.up.write)
}

func (r *floorRelay) fromEcho() {
	out := make([][]byte, len(r.down))
	_ = readRecords(r.up.c, func(recs []byte) error {
		for off := 0; off < len(recs); off += floorRec {
			i := binary.LittleEndian.Uint32(recs[off:])
			if int(i) < len(out) {
				out[i] = append(out[i], recs[off:off+floorRec]...)
			}
		}
		for i, b := range out {
			if len(b) > 0 {
				_ = r.down[i].write(b)
				out[i] = b[:0]
			}
		}
		return nil
	})
}

// readRecords reads c until a read fails (its error is returned, or got's) and hands got
// the whole records each read completes; a record a read cuts waits for its rest.
func readRecords(c net.Conn, got func(recs []byte) error) error {
	buf := make([]byte, 64<<10)
	have := 0
	for {
		n, err := c.Read(buf[have:])
		if err != nil {
			return err
		}
		have += n
		whole := have - have%floorRec
		if whole > 0 {
			if err := got(buf[:whole]); err != nil {
				return err
			}
		}
		have = copy(buf, buf[whole:have])
	}
}

// floorWorker drives one client connection of the floor: up to Window records
// outstanding, paced at rate per second if rate > 0, each reply matched by its number.
type floorWorker struct {
	flow
	c   net.Conn
	idx uint32
}

func (w *floorWorker) run(rate float64, offset time.Duration) {
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		w.readFailed(readRecords(w.c, func(recs []byte) error {
			now := time.Since(w.base)
			w.mu.Lock()
			for off := 0; off < len(recs); off += floorRec {
				w.settle(recs[off:off+floorRec], now)
			}
			w.mu.Unlock()
			w.signal()
			return nil
		}))
	}()
	w.sendPaced(rate, offset, func(b []byte, seq uint64) []byte {
		var rec [floorRec]byte
		binary.LittleEndian.PutUint32(rec[0:], w.idx)
		binary.LittleEndian.PutUint64(rec[4:], seq)
		return append(b, rec[:]...)
	}, nil, func(b []byte) error {
		_, err := w.c.Write(b)
		return err
	})
	_ = w.c.SetReadDeadline(time.Now())
	<-readerDone
}

// settle matches one reply record to its request.
func (w *floorWorker) settle(rec []byte, now time.Duration) {
	idx, seq := binary.LittleEndian.Uint32(rec), binary.LittleEndian.Uint64(rec[4:])
	t0, ok := w.pending[seq]
	switch {
	case idx != w.idx || (!ok && seq >= uint64(w.sent)):
		w.stats.Err(ErrUnexpected, 1, fmt.Sprintf("record %d of connection %d on connection %d", seq, idx, w.idx))
	case !ok:
		w.stats.Err(ErrDuplicate, 1, fmt.Sprintf("record %d", seq))
	default:
		delete(w.pending, seq)
		w.stats.Ops++
		w.stats.Lat.Record(now - t0)
	}
}
