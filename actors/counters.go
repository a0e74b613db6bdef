package actors

import (
	"sync/atomic"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-im/switchboard/xmpp"
)

// stripedCounter is a counter that goroutines on different cores add to without writing
// the same cache line. One prometheus counter per stanza in and out is one atomic add on
// a line that bounced between the cores on every stanza: 1.4 % of a node's CPU at full
// speed. A stripe is picked from an address the caller has at hand (the session or
// connection), so one session's counts stay on one line and two sessions' rarely share.
type stripedCounter [counterStripes]struct {
	n atomic.Uint64
	_ [56]byte // a stripe per 64-byte line
}

const counterStripes = 16

func (c *stripedCounter) inc(p unsafe.Pointer) {
	c[(uint64(uintptr(p))*0x9E3779B97F4A7C15)>>60].n.Add(1) // the top 4 bits: 16 stripes
}

func (c *stripedCounter) load() uint64 {
	var n uint64
	for i := range c {
		n += c[i].n.Load()
	}
	return n
}

// stanzaCounters exports the striped stanza counters as switchboard_stanzas_in_total
// {kind, source} and switchboard_stanzas_out_total.
type stanzaCounters struct {
	in      [3][xmpp.KindIQ + 1]stripedCounter // [source][kind]
	out     stripedCounter
	inDesc  *prometheus.Desc
	outDesc *prometheus.Desc
}

var sourceNames = [...]string{fromC2S: "c2s", fromComponent: "component", fromS2S: "s2s"}

func newStanzaCounters() *stanzaCounters {
	return &stanzaCounters{
		inDesc: prometheus.NewDesc("switchboard_stanzas_in_total", "Stanzas received from sessions, by kind and source.",
			[]string{"kind", "source"}, nil),
		outDesc: prometheus.NewDesc("switchboard_stanzas_out_total", "Stanzas queued for writing to sessions on this node.",
			nil, nil),
	}
}

func (c *stanzaCounters) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.inDesc
	ch <- c.outDesc
}

func (c *stanzaCounters) Collect(ch chan<- prometheus.Metric) {
	for src, name := range sourceNames {
		for k := xmpp.KindMessage; k <= xmpp.KindIQ; k++ {
			ch <- prometheus.MustNewConstMetric(c.inDesc, prometheus.CounterValue, float64(c.in[src][k].load()), k.String(), name)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.outDesc, prometheus.CounterValue, float64(c.out.load()))
}
