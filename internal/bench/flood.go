package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Flood kinds: what the flooding client sends, as fast as the server takes it.
const (
	FloodRoster   = "roster"   // roster gets
	FloodPresence = "presence" // presence updates
	FloodMessage  = "message"  // chat messages to a third user, who reads them
)

// FloodKinds lists the flood kinds.
var FloodKinds = []string{FloodRoster, FloodPresence, FloodMessage}

// runFlood is the hostile-client check of the security review (issue 17): one
// authenticated client (user 0) sends one kind of stanza as fast as the server reads it,
// for Dur (default 5 s), while another user (user 1) pings the server every 100 ms. The
// result's latency is the bystander's ping round trips (a ping with no answer within
// Timeout counts as that long, and as an error); ops are the stanzas the flooder wrote;
// with ServerPID, the server's RSS before, at its highest (read every 50 ms) and 2 s after
// the flood (or Dur, if shorter). The flooder reads what it is sent and drops it; a server that disconnects it
// ends its flood early (FloodCut), which is a defence, not an error.
func runFlood(ctx context.Context, o *Options) (*Result, error) {
	kind := o.Flood
	if kind == "" {
		kind = FloodRoster
	}
	var stanza func(i int) string
	switch kind {
	case FloodRoster:
		stanza = func(i int) string {
			return "<iq type='get' id='r" + strconv.Itoa(i) + "'><query xmlns='jabber:iq:roster'/></iq>"
		}
	case FloodPresence:
		stanza = func(i int) string { return "<presence><status>" + strconv.Itoa(i) + "</status></presence>" }
	case FloodMessage:
	default:
		return nil, fmt.Errorf("bench: unknown flood %q (one of %s)", kind, strings.Join(FloodKinds, ", "))
	}
	dur := o.Dur
	if dur <= 0 {
		dur = 5 * time.Second
	}
	if o.Users < 3 {
		o.Users = 3
	}
	clients, err := loginAll(ctx, o, o.Client.Addr, 3, 0, time.Now())
	if err != nil {
		return nil, err
	}
	defer closeAll(clients)
	flooder, bystander, sink := clients[0], clients[1], clients[2]
	if kind == FloodMessage {
		to := string(appendEscaped(nil, sink.JID))
		body := strings.Repeat("flood ", 20)
		stanza = func(i int) string {
			return "<message type='chat' to='" + to + "' id='m" + strconv.Itoa(i) + "'><body>" + body + "</body></message>"
		}
	}
	res := &Result{Scenario: Flood, Server: o.Client.Addr, Conns: 1, Flood: kind}
	var rssMax atomic.Int64
	if o.ServerPID > 0 {
		kb, err := readRSS(o.ServerPID)
		if err != nil {
			return nil, err
		}
		res.RSSBeforeKiB = kb
		rssMax.Store(kb)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	if o.ServerPID > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(50 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				if kb, err := readRSS(o.ServerPID); err == nil && kb > rssMax.Load() {
					rssMax.Store(kb)
				}
			}
		}()
	}
	// The flooder's and the sink's readers drop what they get.
	var answered, delivered atomic.Uint64
	drain := func(c *Client, n *atomic.Uint64) {
		defer wg.Done()
		for {
			if _, err := c.Sc.Next(); err != nil {
				return
			}
			n.Add(1)
		}
	}
	wg.Add(2)
	go drain(flooder, &answered)
	go drain(sink, &delivered)

	// The bystander's pings, until the flood is over and has settled.
	var pings Stats
	pingDone := make(chan struct{})
	go func() {
		defer close(pingDone)
		to := string(appendEscaped(nil, o.Client.Domain))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := "p" + strconv.Itoa(i)
			t0 := time.Now()
			_ = bystander.Conn.SetDeadline(t0.Add(o.Timeout))
			err := bystander.writeNow("<iq type='get' id='" + id + "' to='" + to + "'><ping xmlns='" + nsPing + "'/></iq>")
			for err == nil {
				var st *Stanza
				if st, err = bystander.Sc.Next(); err == nil && string(st.Name) == "iq" && st.ID.Is(id) {
					break
				}
			}
			if err != nil {
				pings.Lat.Record(o.Timeout)
				pings.Err(ErrTimeout, 1, "bystander ping: "+err.Error())
				return // the bystander's connection is gone or stuck
			}
			pings.Lat.Record(time.Since(t0))
			pings.Ops++
			time.Sleep(100 * time.Millisecond)
		}
	}()

	// The flood: batches of 64 stanzas, written as fast as the server reads them.
	sp := startSpan()
	end := sp.wall.Add(dur)
	_ = flooder.Conn.SetWriteDeadline(end)
	var sent uint64
	var batch []byte
	var ends [64]int // where each stanza of the batch ends
	for i := 0; time.Now().Before(end) && ctx.Err() == nil; {
		batch = batch[:0]
		for k := range ends {
			batch = append(batch, stanza(i)...)
			ends[k] = len(batch)
			i++
		}
		n, err := flooder.Conn.Write(batch)
		for _, e := range ends {
			if e <= n {
				sent++
			}
		}
		if err != nil {
			if time.Now().Before(end.Add(-50 * time.Millisecond)) {
				res.FloodCut = err.Error()
			}
			break
		}
	}
	m := sp.end()
	time.Sleep(min(2*time.Second, dur)) // settle: what the node holds after the flood
	if o.ServerPID > 0 {
		if kb, err := readRSS(o.ServerPID); err == nil {
			res.RSSAfterKiB = kb
		}
	}
	close(stop)
	<-pingDone // (its last ping answered: closing the bystander first would fail it)
	flooder.Close()
	sink.Close()
	bystander.Close()
	wg.Wait()
	res.fill(&pings, m)
	res.Pings = pings.Ops
	res.Ops = sent
	res.Throughput = float64(sent) / m.elapsed.Seconds()
	res.RSSMaxKiB = rssMax.Load()
	res.FloodAnswered, res.FloodDelivered = answered.Load(), delivered.Load()
	return res, nil
}
