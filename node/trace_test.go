package node_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/switchboard-im/switchboard/node"
)

// /trace streams what a JID sends and is sent, nothing else; at most four traces run at
// once; the last line says how many events were dropped.
func TestTraceAJID(t *testing.T) {
	s := startNode(t)
	for _, u := range []string{"juliet", "romeo", "nurse"} {
		s.addUser(u, "pw")
	}
	j, r, n := s.client("juliet", "pw"), s.client("romeo", "pw"), s.client("nurse", "pw")
	get := func(jid string) *http.Response {
		resp, err := http.Get("http://" + s.n.Addrs.Admin + "/trace?seconds=1&jid=" + jid)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	resp := get("juliet@localhost")
	lines := bufio.NewScanner(resp.Body)
	next := func() node.TraceLine {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("the trace ended: %v", lines.Err())
		}
		var l node.TraceLine
		if err := json.Unmarshal(lines.Bytes(), &l); err != nil {
			t.Fatalf("%s: %v", lines.Text(), err)
		}
		return l
	}
	if l := next(); l.Node != "test" || l.End {
		t.Fatalf("first line %+v", l)
	}
	for range 3 {
		get("romeo@localhost")
	}
	if resp := get("nurse@localhost"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a fifth trace: %s", resp.Status)
	}
	r.Send(`<message to='juliet@localhost' type='chat' id='m1'><body>1</body></message>`)
	n.Send(`<message to='romeo@localhost' type='chat' id='m2'><body>2</body></message>`)
	j.Send(`<message to='romeo@localhost' type='chat' id='m3'><body>3</body></message>`)
	traced := map[string]string{} // message id → to
	for {
		l := next()
		if l.End {
			break
		}
		for _, id := range []string{"m1", "m2", "m3"} {
			if l.Kind == "message" && l.Outcome == "routed" && strings.Contains(l.Stanza, `id="`+id+`"`) {
				traced[id] = l.To
			}
		}
	}
	if traced["m1"] != "juliet@localhost" || traced["m3"] != "romeo@localhost" || traced["m2"] != "" {
		t.Fatalf("traced: %v", traced)
	}
}
