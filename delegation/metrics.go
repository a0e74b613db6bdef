package delegation

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Outcomes of a delegated IQ, as counted in switchboard_delegation_iqs_total.
const (
	OutcomeForwarded   = "forwarded"   // sent to a managing entity
	OutcomeResult      = "result"      // answered with a valid result
	OutcomeError       = "error"       // answered with a valid error
	OutcomeInvalid     = "invalid"     // the reply failed validation (requester got service-unavailable)
	OutcomeTimeout     = "timeout"     // no reply within delegation.timeout
	OutcomeUnavailable = "unavailable" // no managing entity connected, or it went away
	OutcomeRerouted    = "rerouted"    // taken back before it was sent (its connection was withdrawn) and forwarded again
)

// Metrics counts delegated IQs per host and namespace. The namespace label only takes
// delegated namespaces, so its cardinality is bounded by the rules.
type Metrics struct {
	iqs     *prometheus.CounterVec
	latency *prometheus.HistogramVec

	// The series of each host and namespace, looked up once: a label lookup hashes and
	// validates every value, twice per delegated IQ (~4% of a node's CPU). The map is
	// replaced, never written, so a lookup takes no lock: a read lock's shared counter
	// bounced between the cores on every IQ (1% of a node's CPU at full speed).
	series atomic.Pointer[map[seriesKey]*nsSeries]
	mu     sync.Mutex // serializes replacing series
}

var outcomes = [...]string{OutcomeForwarded, OutcomeResult, OutcomeError, OutcomeInvalid, OutcomeTimeout, OutcomeUnavailable, OutcomeRerouted}

type seriesKey struct{ host, ns string }

type nsSeries struct {
	count   [len(outcomes)]prometheus.Counter
	latency prometheus.Observer
}

// NewMetrics registers the delegation metrics on reg (nil: not exported).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		iqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_delegation_iqs_total",
			Help: "Delegated IQs by host, namespace and outcome.",
		}, []string{"host", "namespace", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchboard_delegation_latency_seconds",
			Help:    "Time from forwarding a delegated IQ to its answer, by host and namespace.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"host", "namespace"}),
	}
	if reg != nil {
		reg.MustRegister(m.iqs, m.latency)
	}
	return m
}

func (m *Metrics) seriesOf(host, ns string) *nsSeries {
	k := seriesKey{host, ns}
	if cur := m.series.Load(); cur != nil {
		if s := (*cur)[k]; s != nil {
			return s
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.series.Load()
	if cur != nil {
		if s := (*cur)[k]; s != nil {
			return s
		}
	}
	s := &nsSeries{latency: m.latency.WithLabelValues(host, ns)}
	for i, o := range outcomes {
		s.count[i] = m.iqs.WithLabelValues(host, ns, o)
	}
	next := make(map[seriesKey]*nsSeries)
	if cur != nil {
		maps.Copy(next, *cur)
	}
	next[k] = s
	m.series.Store(&next)
	return s
}

// Count adds one IQ with an outcome.
func (m *Metrics) Count(host, ns, outcome string) { m.count(m.seriesOf(host, ns), host, ns, outcome) }

func (m *Metrics) count(s *nsSeries, host, ns, outcome string) {
	for i, o := range outcomes {
		if o == outcome {
			s.count[i].Inc()
			return
		}
	}
	m.iqs.WithLabelValues(host, ns, outcome).Inc()
}

// Forwarded counts p as forwarded and keeps its series for Done (one lookup per IQ, not
// two). Call it before p is shared.
func (m *Metrics) Forwarded(p *Request) {
	p.series = m.seriesOf(p.Host, p.Namespace)
	m.count(p.series, p.Host, p.Namespace, OutcomeForwarded)
}

// Done records the end of a pending IQ.
func (m *Metrics) Done(p *Request, outcome string) {
	s := p.series
	if s == nil {
		s = m.seriesOf(p.Host, p.Namespace)
	}
	m.count(s, p.Host, p.Namespace, outcome)
	if outcome == OutcomeResult || outcome == OutcomeError {
		s.latency.Observe(time.Since(p.Started).Seconds())
	}
}

// Value returns a counter's current value (for tests and the admin API).
func (m *Metrics) Value(host, ns, outcome string) float64 {
	c, err := m.iqs.GetMetricWithLabelValues(host, ns, outcome)
	if err != nil {
		return 0
	}
	var out dto.Metric
	if err := c.Write(&out); err != nil {
		return 0
	}
	return out.GetCounter().GetValue()
}
