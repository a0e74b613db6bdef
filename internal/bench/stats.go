package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/bits"
	"sort"
	"time"
)

// Error kinds. Every request ends in exactly one of: a correct reply (an op), or one of
// these.
const (
	ErrTimeout      = "timeout"       // no reply within --timeout (or the run's hard limit)
	ErrErrorReply   = "error_reply"   // type='error'
	ErrWrongReply   = "wrong_reply"   // a reply with the right id but wrong type or from
	ErrDuplicate    = "duplicate"     // a second reply for the same id
	ErrUnexpected   = "unexpected"    // a reply whose id was never sent (on this connection)
	ErrDisconnected = "disconnected"  // outstanding when the connection failed
	ErrConnect      = "connect"       // a connection or login that failed
	ErrNotSent      = "not_sent"      // requested but never sent (the run was cut short)
	ErrComponent    = "component_bad" // the echo component got something it could not answer
	ErrPing         = "ping"          // an idle session that did not answer its final ping
)

// Histogram is a log-linear latency histogram (under 1.6% relative error) in nanoseconds.
type Histogram struct {
	counts []uint64
	n      uint64
	sum    int64
	max    int64
}

const (
	subBits    = 6
	subCount   = 1 << subBits // per power of two
	linear     = 2 * subCount // values below are exact
	histOctave = 48
)

func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	if h.counts == nil {
		h.counts = make([]uint64, linear+histOctave*subCount)
	}
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += v
	if v > h.max {
		h.max = v
	}
}

func bucketOf(v int64) int {
	if v < linear {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - (subBits + 1) // v>>e is in [subCount, 2*subCount)
	idx := linear + (e-1)*subCount + int(v>>e) - subCount
	if max := linear + histOctave*subCount - 1; idx > max {
		return max
	}
	return idx
}

// bucketMid is a representative value of a bucket.
func bucketMid(i int) int64 {
	if i < linear {
		return int64(i)
	}
	e := (i-linear)/subCount + 1
	m := int64((i-linear)%subCount + subCount)
	return m<<e + (int64(1)<<e)/2
}

// Merge adds o into h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, len(o.counts))
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	if o.max > h.max {
		h.max = o.max
	}
}

// Quantile returns the q-quantile (0 < q ≤ 1).
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.999999)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := bucketMid(i)
			if v > h.max {
				v = h.max
			}
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}

// Count is the number of samples.
func (h *Histogram) Count() uint64 { return h.n }

// Stats collects one worker's outcome; workers merge theirs at the end.
type Stats struct {
	Ops    uint64
	Lat    Histogram
	Errs   map[string]uint64
	First  string            // the first error, for the report
	extras uint64            // component-handled count and the like
	firsts map[string]string // the first error of each kind
}

// Err counts n errors of a kind, remembering the first one's detail.
func (s *Stats) Err(kind string, n uint64, detail string) {
	if n == 0 {
		return
	}
	if s.Errs == nil {
		s.Errs = make(map[string]uint64)
	}
	s.Errs[kind] += n
	if _, ok := s.firsts[kind]; !ok {
		if s.firsts == nil {
			s.firsts = make(map[string]string)
		}
		s.firsts[kind] = detail
	}
	if s.First == "" {
		s.First = kind
		if detail != "" {
			s.First += ": " + detail
		}
	}
}

// Merge adds o into s.
func (s *Stats) Merge(o *Stats) {
	s.Ops += o.Ops
	s.Lat.Merge(&o.Lat)
	if s.First == "" {
		s.First = o.First
	}
	for k, v := range o.Errs {
		if s.Errs == nil {
			s.Errs = make(map[string]uint64)
		}
		s.Errs[k] += v
	}
	for k, v := range o.firsts {
		if _, ok := s.firsts[k]; !ok {
			if s.firsts == nil {
				s.firsts = make(map[string]string)
			}
			s.firsts[k] = v
		}
	}
	s.extras += o.extras
}

// Errors is the total error count.
func (s *Stats) Errors() uint64 {
	var n uint64
	for _, v := range s.Errs {
		n += v
	}
	return n
}

// Latency is in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Result is what a scenario reports (the --json output).
type Result struct {
	Scenario   string            `json:"scenario"`
	Server     string            `json:"server"`
	Target     string            `json:"target,omitempty"`
	Conns      int               `json:"conns"`
	Window     int               `json:"window,omitempty"`
	Rate       float64           `json:"rate,omitempty"`
	Requested  uint64            `json:"requested,omitempty"`
	Ops        uint64            `json:"ops"`
	Errors     uint64            `json:"errors"`
	ErrorKinds map[string]uint64 `json:"error_kinds,omitempty"`
	FirstError string            `json:"first_error,omitempty"`
	// FirstErrors is the first error of each kind, when there were several kinds.
	FirstErrors map[string]string `json:"first_errors,omitempty"`
	Seconds     float64           `json:"seconds"`
	Throughput  float64           `json:"throughput"`
	LatencyMS   Latency           `json:"latency_ms"`

	// ToolCPUPercent is the load tool's own CPU use while the load ran, in % of one core
	// (what a server sharing the machine could not have). Read from the process's own
	// counters, so measuring it disturbs nothing.
	ToolCPUPercent float64 `json:"tool_cpu_percent,omitempty"`

	// delegation: IQs the echo component answered (equals ops when all is well).
	ComponentHandled uint64 `json:"component_handled,omitempty"`

	// idle
	Sessions         int     `json:"sessions,omitempty"`
	RSSBeforeKiB     int64   `json:"rss_before_kib,omitempty"`
	RSSAfterKiB      int64   `json:"rss_after_kib,omitempty"`
	RSSPerSessionKiB float64 `json:"rss_per_session_kib,omitempty"`

	// flood (also RSSBeforeKiB, RSSAfterKiB: 2 s after the flood; latency: the
	// bystander's pings)
	Flood          string `json:"flood,omitempty"`
	RSSMaxKiB      int64  `json:"rss_max_kib,omitempty"`
	Pings          uint64 `json:"pings,omitempty"`
	FloodAnswered  uint64 `json:"flood_answered,omitempty"`  // stanzas the flooder got back
	FloodDelivered uint64 `json:"flood_delivered,omitempty"` // messages the third user got
	FloodCut       string `json:"flood_cut,omitempty"`       // the server ended the flooder's stream early

	// s2s: each direction's figures (ops above are both together), and arrivals behind
	// a message sent later on the same pair and direction
	Directions []Direction `json:"directions,omitempty"`
	OutOfOrder uint64      `json:"out_of_order,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// span is when the load started: wall clock and the tool's CPU time.
type span struct {
	wall  time.Time
	cpu   time.Duration
	cpuOK bool
}

func startSpan() span {
	cpu, ok := processCPU()
	return span{wall: time.Now(), cpu: cpu, cpuOK: ok}
}

// measured is how long the load ran and the tool's CPU use meanwhile, in % of one core
// (0 where it cannot be read).
type measured struct {
	elapsed    time.Duration
	cpuPercent float64
}

// end measures from the start to now.
func (s span) end() measured {
	m := measured{elapsed: time.Since(s.wall)}
	if cpu, ok := processCPU(); ok && s.cpuOK && m.elapsed > 0 {
		m.cpuPercent = math.Round(float64(cpu-s.cpu)/float64(m.elapsed)*1000) / 10
	}
	return m
}

// fill computes the result's figures from merged stats over what was measured.
func (r *Result) fill(s *Stats, m measured) {
	r.Ops = s.Ops
	r.Errors = s.Errors()
	if r.Errors > 0 {
		r.ErrorKinds = s.Errs
		r.FirstError = s.First
		if len(s.firsts) > 1 {
			r.FirstErrors = s.firsts
		}
	}
	r.Seconds = m.elapsed.Seconds()
	if r.Seconds > 0 {
		r.Throughput = float64(s.Ops) / r.Seconds
	}
	r.ToolCPUPercent = m.cpuPercent
	h := &s.Lat
	r.LatencyMS = Latency{P50: ms(h.Quantile(0.5)), P90: ms(h.Quantile(0.9)), P99: ms(h.Quantile(0.99)), Max: ms(time.Duration(h.max))}
	if h.n > 0 {
		r.LatencyMS.Mean = ms(time.Duration(h.sum / int64(h.n)))
	}
}

// WriteJSON writes the result as one JSON object.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	return enc.Encode(r)
}

// WriteText writes a human summary.
func (r *Result) WriteText(w io.Writer) {
	fmt.Fprintf(w, "scenario    %s against %s", r.Scenario, r.Server)
	if r.Target != "" {
		fmt.Fprintf(w, " (receivers on %s)", r.Target)
	}
	fmt.Fprintf(w, "\nconns       %d", r.Conns)
	if r.Window > 0 {
		fmt.Fprintf(w, ", window %d", r.Window)
	}
	if r.Rate > 0 {
		fmt.Fprintf(w, ", rate %.0f/s", r.Rate)
	}
	fmt.Fprintf(w, "\nops         %d in %.2fs", r.Ops, r.Seconds)
	if r.Requested > 0 {
		fmt.Fprintf(w, " (requested %d)", r.Requested)
	}
	fmt.Fprintf(w, "\nthroughput  %.0f ops/s", r.Throughput)
	if r.ToolCPUPercent > 0 {
		fmt.Fprintf(w, " (the tool used %.1f%% of a core)", r.ToolCPUPercent)
	}
	fmt.Fprintln(w)
	l := r.LatencyMS
	fmt.Fprintf(w, "latency ms  p50 %.3f  p90 %.3f  p99 %.3f  max %.3f  mean %.3f\n", l.P50, l.P90, l.P99, l.Max, l.Mean)
	if r.ComponentHandled > 0 {
		fmt.Fprintf(w, "component   answered %d delegated IQs\n", r.ComponentHandled)
	}
	if r.Flood != "" {
		fmt.Fprintf(w, "flood       %s: the flooder got %d stanzas back, the third user %d messages; latency above is another user's %d pings\n",
			r.Flood, r.FloodAnswered, r.FloodDelivered, r.Pings)
		if r.RSSMaxKiB > 0 {
			fmt.Fprintf(w, "server RSS  %d KiB before, %d KiB at most, %d KiB 2 s after\n", r.RSSBeforeKiB, r.RSSMaxKiB, r.RSSAfterKiB)
		}
		if r.FloodCut != "" {
			fmt.Fprintf(w, "cut         the server ended the flood early: %s\n", r.FloodCut)
		}
	}
	for _, d := range r.Directions {
		fmt.Fprintf(w, "%-11s %d delivered (%.0f/s), p50 %.3f  p99 %.3f  max %.3f ms, %d errors, %d out of order\n",
			d.From+" → "+d.To, d.Ops, d.Throughput, d.LatencyMS.P50, d.LatencyMS.P99, d.LatencyMS.Max, d.Errors, d.OutOfOrder)
	}
	if r.Scenario == S2S {
		fmt.Fprintf(w, "order       %d delivered out of order\n", r.OutOfOrder)
	}
	if r.Sessions > 0 {
		fmt.Fprintf(w, "sessions    %d", r.Sessions)
		if r.RSSAfterKiB > 0 {
			fmt.Fprintf(w, "; server RSS %d → %d KiB: %.1f KiB per session", r.RSSBeforeKiB, r.RSSAfterKiB, r.RSSPerSessionKiB)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "errors      %d", r.Errors)
	if r.Errors > 0 {
		kinds := make([]string, 0, len(r.ErrorKinds))
		for k := range r.ErrorKinds {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			fmt.Fprintf(w, "  %s=%d", k, r.ErrorKinds[k])
		}
		fmt.Fprintf(w, "\n            first: %s", r.FirstError)
		if len(r.FirstErrors) > 1 {
			for _, k := range kinds {
				fmt.Fprintf(w, "\n            first %s: %s", k, r.FirstErrors[k])
			}
		}
	}
	fmt.Fprintln(w)
}
