package actors

import (
	"sync"
	"testing"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-im/switchboard/xmpp"
)

// Counts from many goroutines, each with its own address, add up exactly, and the
// registry exports them under the names and labels the README lists.
func TestStanzaCounters(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	owners := make([]*Session, 32)
	var wg sync.WaitGroup
	for i := range owners {
		owners[i] = &Session{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				m.stanzaIn(xmpp.KindIQ, fromC2S, unsafe.Pointer(owners[i]))
				m.stanzas.out.inc(unsafe.Pointer(owners[i]))
			}
			m.stanzaIn(xmpp.KindMessage, fromComponent, unsafe.Pointer(owners[i]))
			m.stanzaIn(xmpp.KindOther, fromComponent, unsafe.Pointer(owners[i])) // not a stanza: not counted
		}()
	}
	wg.Wait()
	used := map[int]bool{}
	for i := range m.stanzas.out {
		if m.stanzas.out[i].n.Load() > 0 {
			used[i] = true
		}
	}
	if len(used) < 2 {
		t.Errorf("32 sessions' counts went to %d stripe(s)", len(used))
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			key := f.GetName()
			for _, l := range mt.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			got[key] = mt.GetCounter().GetValue()
		}
	}
	for key, want := range map[string]float64{
		"switchboard_stanzas_in_total kind=iq source=c2s":             32000,
		"switchboard_stanzas_in_total kind=message source=component":  32,
		"switchboard_stanzas_in_total kind=presence source=component": 0,
		"switchboard_stanzas_out_total":                               32000,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (exported: %v), want %v", key, v, ok, want)
		}
	}
}
