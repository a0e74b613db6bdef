package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/switchboard-im/switchboard/internal/bench"
)

// rec is what became of one IQ.
type rec struct {
	window  int // the event window it was first sent in
	answers int
	failed  bool      // its first answer was an error
	errorAt time.Time // when that error came
	errorIn int       // the window it came in
	cond    string    // its condition
	resent  bool      // sent again on a new stream: the old one ended before it was read
}

// window is the stretch of the run that follows an event (or the steady load before any).
type window struct {
	name string
	at   time.Time
	note string
}

// load sends delegated IQs through node 1 at a steady rate from several clients, each
// of which reconnects to the next node when its stream ends, and matches every answer to
// its IQ.
type load struct {
	addrs   []string
	rate    float64 // in all
	clients int
	timeout time.Duration

	mu         sync.Mutex
	recs       map[string]*rec
	windows    []window
	seq        int
	reconnects int
	flowing    chan struct{} // closed at the first result
	flowOnce   sync.Once
	unanswered int // IQs sent and not yet answered
}

func newLoad(addrs []string, rate float64, clients int, timeout time.Duration) *load {
	return &load{addrs: addrs, rate: rate, clients: clients, timeout: timeout, recs: make(map[string]*rec),
		windows: []window{{name: "start", at: time.Now()}}, flowing: make(chan struct{})}
}

// mark begins a new window.
func (l *load) mark(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.windows = append(l.windows, window{name: name, at: time.Now()})
}

// note adds to the current window's note (an event that did not go as planned).
func (l *load) note(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.windows[len(l.windows)-1].note = s
}

func (l *load) waitFlowing(ctx context.Context, d time.Duration) error {
	select {
	case <-l.flowing:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return fmt.Errorf("no delegated IQ answered within %v: the cluster does not work", d)
	}
}

// conn is the client's current stream.
type conn struct {
	c           *bench.Client
	outstanding map[string]bool // sent on this stream, not answered (l.mu)
	shutdown    bool            // the server ended it with system-shutdown (l.mu)
	ended       chan struct{}
}

// run sends from every client until ctx ends, then leaves their last streams open for
// the answers still due (drainAnswers).
func (l *load) run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range l.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.client(ctx, fmt.Sprintf("%s%d", user, i))
		}()
	}
	wg.Wait()
}

// client is one client's life: connected to node 1 first, then, whenever its stream
// ends, to the next node that takes it.
func (l *load) client(ctx context.Context, name string) {
	node := 0
	var resend []string // IQs to send again on the next stream
	for ctx.Err() == nil {
		c, at := l.connect(ctx, name, node)
		if c == nil {
			return
		}
		node = at
		if !l.send(ctx, c, resend) {
			return // stopped; c stays open for the answers
		}
		resend = l.streamEnded(c)
		node = (node + 1) % len(l.addrs)
	}
}

// connect logs in at addrs[from], or the next node that takes it.
func (l *load) connect(ctx context.Context, name string, from int) (*conn, int) {
	for i := 0; ctx.Err() == nil; i++ {
		at := (from + i) % len(l.addrs)
		cfg := &bench.ClientConfig{Addr: l.addrs[at], Domain: domain, Insecure: true, Timeout: 3 * time.Second}
		c, err := bench.Login(ctx, cfg, name, password, "", time.Now())
		if err != nil {
			sleep(ctx, 50*time.Millisecond)
			continue
		}
		cn := &conn{c: c, outstanding: make(map[string]bool), ended: make(chan struct{})}
		go l.read(cn)
		return cn, at
	}
	return nil, 0
}

// send paces IQs on c until its stream ends (false: ctx ended first). IQs whose stream
// ended before they were read (again) go first.
func (l *load) send(ctx context.Context, c *conn, again []string) bool {
	if len(again) > 0 && !l.write(c, again) {
		return true
	}
	rate := l.rate / float64(l.clients)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	last := time.Now()
	var owed float64
	for {
		select {
		case <-ctx.Done():
			return false
		case <-c.ended:
			return true
		case now := <-tick.C:
			owed += rate * now.Sub(last).Seconds()
			last = now
			n := int(owed)
			owed -= float64(n)
			if n <= 0 { // a tick delayed behind its ticker's start can owe less than nothing
				continue
			}
			ids := make([]string, n)
			l.mu.Lock()
			for i := range ids {
				l.seq++
				ids[i] = "c" + strconv.Itoa(l.seq)
				l.recs[ids[i]] = &rec{window: len(l.windows) - 1}
			}
			l.unanswered += n
			l.mu.Unlock()
			if !l.write(c, ids) {
				return true
			}
		}
	}
}

// write sends the IQs ids on c; false if the stream is gone.
func (l *load) write(c *conn, ids []string) bool {
	var b bytes.Buffer
	l.mu.Lock()
	for _, id := range ids {
		c.outstanding[id] = true
		b.WriteString("<iq type='get' to='" + domain + "' id='" + id + "'><query xmlns='" + namespace + "'/></iq>")
	}
	l.mu.Unlock()
	_ = c.c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.c.Conn.Write(b.Bytes()); err != nil {
		// The reader goes on to the end of what the server sent: closing the
		// connection now could lose its system-shutdown, and with it the knowledge
		// that what is unanswered was never read (streamEnded).
		select {
		case <-c.ended:
		case <-time.After(5 * time.Second):
			_ = c.c.Conn.Close()
			<-c.ended
		}
		return false
	}
	return true
}

// read matches c's answers to their IQs until the stream ends.
func (l *load) read(c *conn) {
	defer close(c.ended)
	for {
		st, err := c.c.Sc.Next()
		if err != nil {
			return
		}
		if string(st.Name) == "stream:error" && bytes.Contains(st.Raw, []byte("system-shutdown")) {
			l.mu.Lock()
			c.shutdown = true
			l.mu.Unlock()
			continue
		}
		if string(st.Name) != "iq" {
			continue
		}
		id := st.ID.String()
		l.mu.Lock()
		r := l.recs[id]
		if r != nil {
			r.answers++
			if r.answers == 1 {
				l.unanswered--
				if st.Type.Is("error") {
					r.failed, r.errorAt, r.errorIn, r.cond = true, time.Now(), len(l.windows)-1, condition(st.Raw)
				} else {
					l.flowOnce.Do(func() { close(l.flowing) })
				}
			}
			delete(c.outstanding, id)
		}
		l.mu.Unlock()
	}
}

// condition is the defined condition of an error stanza.
func condition(raw []byte) string {
	i := bytes.Index(raw, []byte("urn:ietf:params:xml:ns:xmpp-stanzas"))
	if i < 0 {
		return "?"
	}
	j := bytes.LastIndexByte(raw[:i], '<')
	if j < 0 {
		return "?"
	}
	name := raw[j+1:]
	if k := bytes.IndexAny(name, " />"); k >= 0 {
		name = name[:k]
	}
	return string(name)
}

// streamEnded returns what was sent on c and not answered, to be sent again on the next
// stream, if the server ended it with system-shutdown (a draining node answers every
// stanza it read before it closes the stream, so those were never read); after an
// abrupt end they stay unanswered (lost: there is no knowing).
func (l *load) streamEnded(c *conn) []string {
	_ = c.c.Conn.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reconnects++
	if !c.shutdown {
		return nil
	}
	var again []string
	for id := range c.outstanding {
		l.recs[id].resent = true
		again = append(again, id)
	}
	sort.Strings(again)
	return again
}

// drainAnswers waits, up to d, for the answers still due.
func (l *load) drainAnswers(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		n := l.unanswered
		l.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// EventResult is what became of the IQs sent after one event (until the next).
type EventResult struct {
	Event      string `json:"event"`
	Sent       int    `json:"sent"`
	OK         int    `json:"ok"`
	Failed     int    `json:"failed"`
	Lost       int    `json:"lost"`
	Duplicated int    `json:"duplicated"`
	Resent     int    `json:"resent"`
	// Failed and ErrorWindowMS count the errors that came after the event (until the
	// next): ErrorWindowMS is from the event to the last of them; Conditions says which.
	ErrorWindowMS float64        `json:"error_window_ms"`
	Conditions    map[string]int `json:"conditions,omitempty"`
	Note          string         `json:"note,omitempty"`
}

// Result is a chaos run's report.
type Result struct {
	Rate       float64       `json:"rate"`
	Clients    int           `json:"clients"`
	Reconnects int           `json:"client_reconnects"`
	Events     []EventResult `json:"events"`
	Total      EventResult   `json:"total"`
}

func (l *load) result() *Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	res := &Result{Rate: l.rate, Clients: l.clients, Reconnects: l.reconnects, Total: EventResult{Event: "total"}}
	for _, w := range l.windows {
		res.Events = append(res.Events, EventResult{Event: w.name, Note: w.note})
	}
	sent := func(e *EventResult, r *rec) {
		e.Sent++
		switch {
		case r.answers == 0:
			e.Lost++
		case !r.failed:
			e.OK++
		}
		if r.answers > 1 {
			e.Duplicated++
		}
		if r.resent {
			e.Resent++
		}
	}
	failed := func(e *EventResult, r *rec, at time.Time) {
		e.Failed++
		if e.Conditions == nil {
			e.Conditions = map[string]int{}
		}
		e.Conditions[r.cond]++
		if ms := float64(r.errorAt.Sub(at)) / 1e6; ms > e.ErrorWindowMS {
			e.ErrorWindowMS = ms
		}
	}
	for _, r := range l.recs {
		sent(&res.Events[r.window], r)
		sent(&res.Total, r)
		if r.failed {
			failed(&res.Events[r.errorIn], r, l.windows[r.errorIn].at)
			failed(&res.Total, r, l.windows[0].at)
		}
	}
	res.Total.ErrorWindowMS = 0 // per event only
	return res
}

// WriteText prints the report as a table.
func (r *Result) WriteText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "event\tsent\tok\tlost\tduplicated\tresent\tfailed\terror window\t")
	row := func(e EventResult) {
		win := "-"
		if e.Failed > 0 {
			win = fmt.Sprintf("%.0f ms", e.ErrorWindowMS)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", e.Event, e.Sent, e.OK, e.Lost, e.Duplicated, e.Resent, e.Failed, win)
	}
	for _, e := range r.Events {
		row(e)
	}
	row(r.Total)
	_ = tw.Flush()
	for _, e := range r.Events {
		if len(e.Conditions) > 0 {
			fmt.Fprintf(w, "errors after %s: %v\n", e.Event, e.Conditions)
		}
		if e.Note != "" {
			fmt.Fprintf(w, "note: %s: %s\n", e.Event, e.Note)
		}
	}
	fmt.Fprintf(w, "%.0f IQs/s through node 1 from %d clients; they reconnected %d times\n", r.Rate, r.Clients, r.Reconnects)
}

// WriteJSON prints the report as JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
