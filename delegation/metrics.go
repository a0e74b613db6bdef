package delegation

import (
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
)

// Metrics counts delegated IQs per host and namespace. The namespace label only takes
// delegated namespaces, so its cardinality is bounded by the rules.
type Metrics struct {
	iqs     *prometheus.CounterVec
	latency *prometheus.HistogramVec
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

// Count adds one IQ with an outcome.
func (m *Metrics) Count(host, ns, outcome string) {
	m.iqs.WithLabelValues(host, ns, outcome).Inc()
}

// Done records the end of a pending IQ.
func (m *Metrics) Done(p *Pending, outcome string) {
	m.Count(p.Host, p.Namespace, outcome)
	if outcome == OutcomeResult || outcome == OutcomeError {
		m.latency.WithLabelValues(p.Host, p.Namespace).Observe(time.Since(p.Started).Seconds())
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
