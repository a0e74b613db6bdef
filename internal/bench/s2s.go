package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// runS2S measures federation between two servers: Conns clients logged in on server A
// (Client.Addr, Client.Domain) send chat messages to as many clients on server B (Target,
// TargetDomain), client i of A to client i of B's full JID, at a paced total Rate; with
// Reverse, B's clients send to A's at the same rate at the same time, on the same
// connections. Nothing in it is specific to a server: any federated pair will do.
//
// A message is settled when it arrives (latency is one way, on one clock: the tool holds
// both ends; the send time is kept by id) or when its sender gets an error bounce for it;
// one still missing --timeout after the last arrival is lost (a timeout). Arrivals behind
// one sent later on the same pair and direction are counted as out of order.
func runS2S(ctx context.Context, o *Options) (*Result, error) {
	if o.TargetDomain == "" || o.TargetDomain == o.Client.Domain {
		return nil, errors.New("bench: s2s needs --target-domain, a domain other than --domain, served by --target")
	}
	cfgA := o.Client
	cfgB := o.Client
	cfgB.Addr, cfgB.Domain, cfgB.ServerName = o.Target, o.TargetDomain, ""
	base := time.Now()
	as, err := loginAllCfg(ctx, o, cfgA, o.Conns, 0, base)
	if err != nil {
		return nil, fmt.Errorf("%w (on %s, %s)", err, cfgA.Addr, cfgA.Domain)
	}
	defer closeAll(as)
	bs, err := loginAllCfg(ctx, o, cfgB, o.Conns, 0, base)
	if err != nil {
		return nil, fmt.Errorf("%w (on %s, %s)", err, cfgB.Addr, cfgB.Domain)
	}
	defer closeAll(bs)
	// Each server has handled every bind once it answers the next stanza (see runMessage).
	for i := range as {
		if err := pingDomain(as[i], cfgA.Domain, o.Timeout); err != nil {
			return nil, fmt.Errorf("bench: %s: %w", as[i].JID, err)
		}
		if err := pingDomain(bs[i], cfgB.Domain, o.Timeout); err != nil {
			return nil, fmt.Errorf("bench: %s: %w", bs[i].JID, err)
		}
	}
	// One message each way first, outside the measurement: it opens the server-to-server
	// stream(s) (DNS or static route, TCP, TLS, authentication).
	t0 := time.Now()
	if err := warmUp(as[0], bs[0], 2*o.Timeout); err != nil {
		return nil, err
	}
	dirs := 1
	if o.Reverse {
		dirs = 2
		if err := warmUp(bs[0], as[0], 2*o.Timeout); err != nil {
			return nil, err
		}
	}
	o.notef("s2s: %d pairs logged in (%s on %s, %s on %s), streams up in %v, window %d, %d direction(s), starting",
		o.Conns, cfgA.Domain, cfgA.Addr, cfgB.Domain, cfgB.Addr, time.Since(t0).Round(time.Millisecond), o.Window, dirs)

	all := append(append([]*Client(nil), as...), bs...)
	stop, release := newStopper(ctx, o, func() {
		for _, c := range all {
			_ = c.Conn.SetReadDeadline(time.Now())
		}
	})
	defer release()
	fwd := make([]*s2sFlow, o.Conns)
	var rev []*s2sFlow
	for i := range fwd {
		fwd[i] = newS2SFlow(o, as[i], bs[i], 'f', i, base, stop)
	}
	if o.Reverse {
		rev = make([]*s2sFlow, o.Conns)
		for i := range rev {
			rev[i] = newS2SFlow(o, bs[i], as[i], 'r', i, base, stop)
		}
	}
	flowOf := func(dir byte, i int) *s2sFlow {
		switch {
		case i < 0 || i >= o.Conns:
			return nil
		case dir == 'f':
			return fwd[i]
		case dir == 'r' && rev != nil:
			return rev[i]
		}
		return nil
	}

	// One reader per connection (a connection is the sender of one flow and the receiver
	// of the other).
	readerStats := make([]Stats, len(all))
	var readers sync.WaitGroup
	for k, c := range all {
		i := k % o.Conns
		mine := []*s2sFlow{fwd[i]}
		if rev != nil {
			mine = append(mine, rev[i])
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			s2sRead(c, flowOf, mine, &readerStats[k])
		}()
	}

	start := startSpan()
	var senders sync.WaitGroup
	send := func(f *s2sFlow, offset time.Duration) {
		senders.Add(1)
		go func() {
			defer senders.Done()
			rate := 0.0
			if o.Rate > 0 {
				rate = o.Rate / float64(o.Conns)
			}
			f.sendPaced(rate, offset, f.add, nil, f.write)
		}()
	}
	for i := range fwd {
		var off time.Duration
		if o.Rate > 0 {
			off = time.Duration(float64(i) / o.Rate * 1e9)
		}
		send(fwd[i], off)
		if rev != nil {
			if o.Rate > 0 {
				off = time.Duration((float64(i) + 0.5) / o.Rate * 1e9)
			}
			send(rev[i], off)
		}
	}
	senders.Wait()
	ran := start.end()
	for _, c := range all {
		_ = c.Conn.SetReadDeadline(time.Now())
	}
	readers.Wait()
	for _, c := range all {
		_ = c.Conn.SetReadDeadline(time.Time{})
	}

	res := &Result{Scenario: S2S, Server: o.Client.Addr, Target: o.Target, Conns: o.Conns, Window: o.Window, Rate: o.Rate}
	if o.Dur <= 0 {
		res.Requested = uint64(o.Count) * uint64(dirs)
	}
	var total Stats
	res.Directions = append(res.Directions, direction(cfgA.Domain, cfgB.Domain, fwd, ran))
	if rev != nil {
		res.Directions = append(res.Directions, direction(cfgB.Domain, cfgA.Domain, rev, ran))
	}
	for _, f := range append(append([]*s2sFlow(nil), fwd...), rev...) {
		total.Merge(&f.stats)
		res.OutOfOrder += f.order.late
	}
	for k := range readerStats {
		total.Merge(&readerStats[k])
	}
	res.fill(&total, ran)
	return res, nil
}

// Direction is one direction of an s2s run.
type Direction struct {
	From       string            `json:"from"`
	To         string            `json:"to"`
	Ops        uint64            `json:"ops"`
	Errors     uint64            `json:"errors"`
	ErrorKinds map[string]uint64 `json:"error_kinds,omitempty"`
	Throughput float64           `json:"throughput"`
	LatencyMS  Latency           `json:"latency_ms"`
	OutOfOrder uint64            `json:"out_of_order"`
}

func direction(from, to string, flows []*s2sFlow, ran measured) Direction {
	var st Stats
	d := Direction{From: from, To: to}
	for _, f := range flows {
		st.Merge(&f.stats)
		d.OutOfOrder += f.order.late
	}
	var r Result
	r.fill(&st, ran)
	d.Ops, d.Errors, d.ErrorKinds, d.Throughput, d.LatencyMS = r.Ops, r.Errors, r.ErrorKinds, r.Throughput, r.LatencyMS
	return d
}

// warmUp sends one message from one client to the other and waits until it arrives.
func warmUp(from, to *Client, within time.Duration) error {
	id := "w" + runID()
	msg := "<message type='chat' to='" + string(appendEscaped(nil, to.JID)) + "' id='" + id + "'><body>warm-up</body></message>"
	if err := from.writeNow(msg); err != nil {
		return fmt.Errorf("bench: s2s warm-up from %s: %w", from.JID, err)
	}
	_ = to.Conn.SetReadDeadline(time.Now().Add(within))
	defer func() { _ = to.Conn.SetReadDeadline(time.Time{}) }()
	for {
		st, err := to.Sc.Next()
		if err != nil {
			// Say why if the sender got a bounce.
			_ = from.Conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			for {
				b, berr := from.Sc.Next()
				if berr != nil {
					break
				}
				if string(b.Name) == "message" && b.ID.Is(id) {
					return fmt.Errorf("bench: s2s warm-up: %s got a bounce: %.300s", from.JID, b.Raw)
				}
			}
			return fmt.Errorf("bench: s2s warm-up: no message from %s to %s within %v: %w", from.JID, to.JID, within, err)
		}
		if string(st.Name) == "message" && st.ID.Is(id) {
			if st.Type.Is("error") {
				return fmt.Errorf("bench: s2s warm-up: %.300s", st.Raw)
			}
			return nil
		}
	}
}

// s2sFlow is one pair's messages in one direction.
type s2sFlow struct {
	flow
	from, to *Client
	prefix   []byte // up to the id's sequence number
	suffix   []byte
	order    orderCheck // under mu
}

func newS2SFlow(o *Options, from, to *Client, dir byte, i int, base time.Time, stop *stopper) *s2sFlow {
	f := &s2sFlow{flow: newFlow(o, base, stop, i), from: from, to: to}
	f.prefix = append([]byte("<message type='chat' to='"), appendEscaped(nil, to.JID)...)
	f.prefix = append(f.prefix, "' id='"...)
	f.prefix = appendS2SIDPrefix(f.prefix, dir, i)
	f.suffix = []byte("'><body>switchboard bench s2s</body></message>")
	return f
}

func (f *s2sFlow) add(b []byte, seq uint64) []byte {
	b = append(b, f.prefix...)
	b = strconv.AppendUint(b, seq, 10)
	return append(b, f.suffix...)
}

func (f *s2sFlow) write(b []byte) error {
	_, err := f.from.Conn.Write(b)
	return err
}

// settle handles a message of this flow that reached connection c.
func (f *s2sFlow) settle(c *Client, st *Stanza, seq uint64) {
	f.mu.Lock()
	t0, ok := f.pending[seq]
	switch {
	case !ok && seq < uint64(f.sent):
		f.stats.Err(ErrDuplicate, 1, fmt.Sprintf("%.300s", st.Raw))
	case !ok:
		f.stats.Err(ErrUnexpected, 1, fmt.Sprintf("%.300s", st.Raw))
	case st.Type.Is("error"):
		f.stats.Err(ErrErrorReply, 1, fmt.Sprintf("%.300s", st.Raw))
	case c != f.to:
		f.stats.Err(ErrWrongReply, 1, fmt.Sprintf("reached %s, not %s: %.300s", c.JID, f.to.JID, st.Raw))
	default:
		f.stats.Ops++
		f.stats.Lat.Record(c.tr.at - t0)
		f.order.see(seq)
	}
	if ok {
		delete(f.pending, seq)
	}
	f.mu.Unlock()
	if ok {
		f.signal()
	}
}

// s2sRead reads connection c until it fails (or the run sets its deadline): messages go
// to the flow their id names; what names none is counted in st. mine are the flows c
// takes part in, told when it fails.
func s2sRead(c *Client, flowOf func(byte, int) *s2sFlow, mine []*s2sFlow, st *Stats) {
	for {
		s, err := c.Sc.Next()
		if err != nil {
			for _, f := range mine {
				f.readFailed(err)
			}
			return
		}
		if string(s.Name) != "message" {
			continue
		}
		dir, i, seq, ok := parseS2SID(s.ID.Val)
		var f *s2sFlow
		if ok {
			f = flowOf(dir, i)
		}
		if f == nil {
			st.Err(ErrUnexpected, 1, fmt.Sprintf("%.300s", s.Raw))
			continue
		}
		f.settle(c, s, seq)
	}
}

// appendS2SIDPrefix appends the id prefix of pair i's flow in direction dir ('f': A to B,
// 'r': B to A): "f3.", followed by the sequence number.
func appendS2SIDPrefix(b []byte, dir byte, i int) []byte {
	b = append(b, dir)
	b = strconv.AppendInt(b, int64(i), 10)
	return append(b, '.')
}

// parseS2SID splits an id made of appendS2SIDPrefix and a sequence number.
func parseS2SID(id []byte) (dir byte, pair int, seq uint64, ok bool) {
	if len(id) < 4 || (id[0] != 'f' && id[0] != 'r') {
		return 0, 0, 0, false
	}
	dot := bytes.IndexByte(id, '.')
	if dot < 2 || dot == len(id)-1 {
		return 0, 0, 0, false
	}
	p, err := strconv.ParseUint(string(id[1:dot]), 10, 31)
	if err != nil {
		return 0, 0, 0, false
	}
	s, err := strconv.ParseUint(string(id[dot+1:]), 10, 64)
	if err != nil {
		return 0, 0, 0, false
	}
	return id[0], int(p), s, true
}

// orderCheck counts arrivals behind one sent later (sequence numbers of one flow).
type orderCheck struct {
	max  uint64
	any  bool
	late uint64
}

func (o *orderCheck) see(seq uint64) {
	switch {
	case !o.any:
		o.any, o.max = true, seq
	case seq < o.max:
		o.late++
	default:
		o.max = seq
	}
}
