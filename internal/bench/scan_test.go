package bench

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

const streamHead = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='localhost' version='1.0'>`

var stanzas = []string{
	`<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>`,
	`<iq type='result' id='a&apos;1' from="x>y@localhost/r'1"/>`,
	`<message to='a@b/c' id='m1'><body>1 &lt; 2 <![CDATA[ <not a tag> ]]></body><!-- c --></message>`,
	`<iq type='set' from='localhost' to='bench.localhost' id='o1'><delegation xmlns='urn:xmpp:delegation:2'><forwarded xmlns='urn:xmpp:forward:0'><iq xmlns='jabber:client' type='get' id='q0.7' from='u@localhost/r' to='localhost'><query xmlns='urn:example:bench'/></iq></forwarded></delegation></iq>`,
}

// Every split of the input, down to one byte per read, gives the same elements.
func TestScannerSplits(t *testing.T) {
	in := streamHead + "\n" + strings.Join(stanzas, " \n") + "</stream:stream>"
	for _, r := range []io.Reader{strings.NewReader(in), iotest.OneByteReader(strings.NewReader(in)), iotest.HalfReader(strings.NewReader(in))} {
		sc := NewScanner(r)
		sc.buf = make([]byte, 16) // force compaction and growth
		st, err := sc.Next()
		if err != nil || !st.Header || st.ID.String() != "s1" {
			t.Fatalf("header: %v %+v", err, st)
		}
		for i, want := range stanzas {
			st, err := sc.Next()
			if err != nil {
				t.Fatalf("stanza %d: %v", i, err)
			}
			if string(st.Raw) != want {
				t.Fatalf("stanza %d: %q, want %q", i, st.Raw, want)
			}
			switch i {
			case 1:
				if st.ID.String() != "a'1" || st.From.String() != "x>y@localhost/r'1" || st.Child != nil {
					t.Fatalf("attributes: id %q from %q child %q", st.ID.String(), st.From.String(), st.Child)
				}
			case 2:
				if string(st.Child) != "body" {
					t.Fatalf("child %q", st.Child)
				}
			case 3:
				if string(st.Child) != "delegation" || !st.ChildNS.Is(nsDelegV2) {
					t.Fatalf("child %q ns %q", st.Child, st.ChildNS.Val)
				}
				inner, ok := FindElement(st.Raw, 3)
				if !ok || string(inner.Name) != "iq" || !inner.ID.Is("q0.7") || !inner.From.Is("u@localhost/r") {
					t.Fatalf("inner %+v", inner)
				}
			}
		}
		if _, err := sc.Next(); !errors.Is(err, ErrStreamEnd) {
			t.Fatalf("end: %v", err)
		}
	}
}

func TestHistogram(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want float64
	}{{0.5, 500}, {0.9, 900}, {0.99, 990}, {1, 1000}} {
		got := float64(h.Quantile(c.q)) / 1e6
		if got < c.want*0.98 || got > c.want*1.02 {
			t.Errorf("q%v = %vms, want about %v", c.q, got, c.want)
		}
	}
}
