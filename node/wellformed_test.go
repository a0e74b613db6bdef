package node_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-im/switchboard/internal/bench"
	"github.com/switchboard-im/switchboard/internal/nsoracle"
)

// rawLogin logs local in with the load tool's client, which writes what it is given
// byte for byte; headerAttrs goes into its stream headers.
func (s *server) rawLogin(local, password, headerAttrs string) *bench.Client {
	s.t.Helper()
	cfg := &bench.ClientConfig{Addr: s.n.Addrs.C2S, Domain: "localhost", Insecure: true, HeaderAttrs: headerAttrs, Timeout: wait}
	c, err := bench.Login(context.Background(), cfg, local, password, "", time.Now())
	if err != nil {
		s.t.Fatalf("login %s: %v", local, err)
	}
	s.t.Cleanup(c.Close)
	return c
}

func rawSend(t *testing.T, c *bench.Client, stanza string) {
	t.Helper()
	_ = c.Conn.SetWriteDeadline(time.Now().Add(wait))
	if _, err := c.Conn.Write([]byte(stanza)); err != nil {
		t.Fatal(err)
	}
}

// rawNext returns the next stanza c receives other than presence, and fails unless it
// parses alone for a strict receiver (Namespaces in XML, every prefix declared in it).
func rawNext(t *testing.T, c *bench.Client) string {
	t.Helper()
	_ = c.Conn.SetReadDeadline(time.Now().Add(wait))
	for {
		st, err := c.Sc.Next()
		if err != nil {
			t.Fatalf("reading: %v", err)
		}
		if !nsoracle.Strict(st.Raw) {
			t.Fatalf("received what a strict receiver cannot parse: %s", st.Raw)
		}
		if string(st.Name) != "presence" {
			return string(st.Raw)
		}
	}
}

// Finding 4 of the security review: every user could disconnect any other by sending
// XML that Switchboard relayed and a strict receiver could not parse. What is relayed
// now parses alone; what cannot be made to is refused to its sender with not-well-formed,
// as Prosody does, and the receiver never sees it.
func TestRelayedXMLParsesStrictly(t *testing.T) {
	s := startNode(t)
	s.addUser("alice", "a")
	s.addUser("bob", "b")
	bob := s.rawLogin("bob", "b", "")
	rawSend(t, bob, `<presence/>`) // available: messages to his bare JID reach him

	t.Run("prefix declared on the sender's stream header", func(t *testing.T) {
		alice := s.rawLogin("alice", "a", " xmlns:x='urn:example:x'")
		rawSend(t, alice, `<message to='bob@localhost' id='h1'><x:thing x:attr='1'/><body>hi</body></message>`)
		got := rawNext(t, bob)
		if !strings.Contains(got, "id='h1'") || !strings.Contains(got, "xmlns:x='urn:example:x'") {
			t.Fatalf("bob got %s", got)
		}
	})
	t.Run("prefixed attribute on a rewritten stanza", func(t *testing.T) {
		alice := s.rawLogin("alice", "a", "")
		rawSend(t, alice, `<message to='bob@localhost' id='p1' xmlns:e='urn:example:e' e:flag='yes'><body>hi</body></message>`)
		got := rawNext(t, bob)
		if !strings.Contains(got, "e:flag='yes'") || strings.Contains(got, "urn:example:e:flag") || !strings.Contains(got, "from='alice@localhost/") {
			t.Fatalf("bob got %s", got)
		}
	})

	hostile := []struct{ name, stanza string }{
		{"duplicate attribute", `<message to='bob@localhost' id='d' type='chat' type='normal'><body>x</body></message>`},
		{"duplicate attribute deep inside", `<message to='bob@localhost' id='d'><x xmlns='urn:x'><y a='1' a='2'/></x></message>`},
		{"same attribute under two prefixes", `<message to='bob@localhost' id='d'><x xmlns='urn:x' xmlns:p='urn:p' xmlns:q='urn:p' p:a='1' q:a='2'/></message>`},
		{"undeclared prefix", `<message to='bob@localhost' id='u'><body>x</body><u:x/></message>`},
		{"undeclared attribute prefix", `<message to='bob@localhost' id='u'><x xmlns='urn:x' u:a='1'/></message>`},
		{"xml prefix redeclared", `<message to='bob@localhost' id='x' xmlns:xml='urn:not-xml'><body>x</body></message>`},
		{"xmlns prefix declared", `<message to='bob@localhost' id='x'><x xmlns:xmlns='urn:x'/></message>`},
		{"prefix undeclared", `<message to='bob@localhost' id='x'><x xmlns:p=''/></message>`},
	}
	for _, tc := range hostile {
		t.Run(tc.name, func(t *testing.T) {
			alice := s.rawLogin("alice", "a", "")
			rawSend(t, alice, tc.stanza)
			_ = alice.Conn.SetReadDeadline(time.Now().Add(wait))
			var got strings.Builder
			for {
				st, err := alice.Sc.Next()
				if err != nil {
					if !errors.Is(err, context.DeadlineExceeded) && strings.Contains(err.Error(), "timeout") {
						t.Fatalf("the sender was not disconnected; got %s", got.String())
					}
					break
				}
				got.Write(st.Raw)
			}
			if !strings.Contains(got.String(), "<not-well-formed") {
				t.Fatalf("the sender got %q, want a not-well-formed stream error", got.String())
			}
			// bob is still connected and saw none of it.
			a := s.rawLogin("alice", "a", "")
			rawSend(t, a, `<message to='bob@localhost' id='after'><body>ok</body></message>`)
			if got := rawNext(t, bob); !strings.Contains(got, "id='after'") {
				t.Fatalf("bob got %s", got)
			}
		})
	}
}
