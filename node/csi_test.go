package node_test

import (
	"strings"
	"testing"
	"time"

	"github.com/switchboard-im/switchboard/internal/bench"
)

// XEP-0352: a client that says it is inactive gets presence (each sender's latest only)
// and messages without a body later: before the next urgent stanza, in order, or at once
// when it says it is active again.
func TestCSIHoldsWhatCanWait(t *testing.T) {
	s := startNode(t)
	s.addUser("juliet", "j")
	s.addUser("romeo", "r")
	j := s.rawLogin("juliet", "j", "")
	if !strings.Contains(j.Features, "<csi xmlns='urn:xmpp:csi:0'/>") {
		t.Fatalf("no csi stream feature: %s", j.Features)
	}
	r := s.client("romeo", "r")
	next := func(d time.Duration) string {
		t.Helper()
		_ = j.Conn.SetReadDeadline(time.Now().Add(d))
		st, err := j.Sc.Next()
		if err != nil {
			return ""
		}
		return string(st.Raw)
	}
	rawSend(t, j, `<inactive xmlns='urn:xmpp:csi:0'/><iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if got := next(wait); !strings.Contains(got, "p1") {
		t.Fatalf("ping: %s", got)
	}
	presence := func(status string) string {
		return `<presence to='` + j.JID + `'><status>` + status + `</status></presence>`
	}
	r.Send(presence("one"))
	r.Send(presence("two"))
	r.Send(`<message to='` + j.JID + `' type='chat' id='cs'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`)
	r.Send(presence("three"))
	r.Sync()
	if got := next(300 * time.Millisecond); got != "" {
		t.Fatalf("an inactive client got %s at once", got)
	}
	r.Send(`<message to='` + j.JID + `' type='chat' id='hi'><body>hi</body></message>`)
	var got []string
	for range 3 {
		got = append(got, next(wait))
	}
	if !strings.Contains(got[0], "id=\"cs\"") && !strings.Contains(got[0], "id='cs'") ||
		!strings.Contains(got[1], "three") || !strings.Contains(got[2], "<body>hi</body>") {
		t.Fatalf("after the urgent message, got:\n%s", strings.Join(got, "\n"))
	}
	if more := next(200 * time.Millisecond); more != "" {
		t.Fatalf("then %s (presence one and two should have been replaced)", more)
	}
	r.Send(presence("four"))
	r.Sync()
	if got := next(200 * time.Millisecond); got != "" {
		t.Fatalf("still inactive, got %s", got)
	}
	rawSend(t, j, `<active xmlns='urn:xmpp:csi:0'/>`)
	if got := next(wait); !strings.Contains(got, "four") {
		t.Fatalf("on active: %s", got)
	}
	r.Send(presence("five"))
	if got := next(wait); !strings.Contains(got, "five") {
		t.Fatalf("active again: %s", got)
	}
	_ = bench.ErrStreamEnd
}
