package node_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-im/switchboard/config"
)

// XEP-0160: messages of type chat or normal with a body, to a user with no available
// resource, are kept (limits.offline_max_messages at most) and given to the user's next
// session after its initial presence, in order, each with a delay; past the bound the
// sender gets resource-constraint; they are given once.
func TestOfflineMessages(t *testing.T) {
	s := startNode(t, func(c *config.Config) { c.Limits.OfflineMaxMessages = 3 })
	s.addUser("juliet", "j")
	s.addUser("romeo", "r")
	r := s.client("romeo", "r")
	msg := func(id, typ string) string {
		return fmt.Sprintf(`<message to='juliet@localhost' type='%s' id='%s'><body>%s</body></message>`, typ, id, id)
	}
	r.Send(msg("m1", "chat"))
	r.Send(msg("m2", "normal"))
	r.Send(msg("m3", "chat"))
	r.Send(msg("m4", "chat"))
	if e := r.Next(wait); e.Attr("id") != "m4" || e.ErrorCondition() != "resource-constraint" {
		t.Fatalf("past the bound: %s", e)
	}
	r.ExpectNothing(200 * time.Millisecond) // m1 to m3 were taken

	j := s.client("juliet", "j")
	j.Send(`<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if d := j.Next(wait); !strings.Contains(d.String(), "msgoffline") {
		t.Fatalf("disco#info without msgoffline: %s", d)
	}
	j.ExpectNothing(200 * time.Millisecond) // nothing before the initial presence
	j.Send(`<presence/>`)
	for _, id := range []string{"m1", "m2", "m3"} {
		m := j.Next(wait)
		d := m.Child("delay")
		if m.Attr("id") != id || m.Attr("from") == "" || !strings.HasPrefix(m.Attr("from"), "romeo@localhost/") ||
			d == nil || d.Attr("from") != "localhost" || d.Attr("stamp") == "" {
			t.Fatalf("offline message %s: %s", id, m)
		}
	}
	j.ExpectNothing(200 * time.Millisecond)
	j.Close()

	// Given once: the next session gets none.
	j2 := s.client("juliet", "j")
	j2.Send(`<presence/>`)
	j2.ExpectNothing(300 * time.Millisecond)
}
