package blocking_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-im/switchboard/blocking"
	"github.com/switchboard-im/switchboard/internal/etcdtest"
)

func TestMain(m *testing.M) { etcdtest.Main(m, "blocking-test") }

// XEP-0016 §2.1: what each form of item covers.
func TestMatching(t *testing.T) {
	l := blocking.NewList([]string{"romeo@montague.lit", "nurse@capulet.lit/balcony", "verona.lit", "chat.lit/bot", "Tybalt@Capulet.LIT"})
	for _, c := range []struct {
		local, domain, res string
		want               bool
	}{
		{"romeo", "montague.lit", "", true},
		{"romeo", "montague.lit", "orchard", true},
		{"benvolio", "montague.lit", "", false},
		{"nurse", "capulet.lit", "balcony", true},
		{"nurse", "capulet.lit", "kitchen", false},
		{"nurse", "capulet.lit", "", false},
		{"", "verona.lit", "", true},
		{"anyone", "verona.lit", "x", true},
		{"", "sub.verona.lit", "", false},
		{"", "chat.lit", "bot", true},
		{"user", "chat.lit", "bot", true},
		{"user", "chat.lit", "phone", false},
		{"", "chat.lit", "", false},
		{"tybalt", "capulet.lit", "sword", true}, // stored normalized
	} {
		if got := l.Blocks(c.local, c.domain, c.res); got != c.want {
			t.Errorf("Blocks(%s@%s/%s) = %v, want %v", c.local, c.domain, c.res, got, c.want)
		}
		covered := false
		for _, it := range l.Items() {
			covered = covered || it.Covers(c.local, c.domain, c.res)
		}
		if covered != c.want {
			t.Errorf("Covers(%s@%s/%s) = %v, want %v", c.local, c.domain, c.res, covered, c.want)
		}
	}
	var none *blocking.List
	if none.Blocks("romeo", "montague.lit", "") || none.Len() != 0 {
		t.Error("a nil list blocks")
	}
}

func TestParseIQ(t *testing.T) {
	ok := func(raw, op string, items ...string) {
		t.Helper()
		req, err := blocking.ParseIQ([]byte(raw))
		if err != nil || req.Op != op || len(req.Items) != len(items) {
			t.Fatalf("%s: %+v, %v", raw, req, err)
		}
		for i, it := range req.Items {
			if it.String() != items[i] {
				t.Fatalf("%s: item %d is %s, want %s", raw, i, it, items[i])
			}
		}
	}
	bad := func(raw string, want error) {
		t.Helper()
		if _, err := blocking.ParseIQ([]byte(raw)); !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", raw, err, want)
		}
	}
	ok(`<iq type='get' id='1'><blocklist xmlns='urn:xmpp:blocking'/></iq>`, "blocklist")
	ok(`<iq type='set' id='1'><block xmlns='urn:xmpp:blocking'><item jid='Romeo@Montague.LIT'/><item jid='romeo@montague.lit'/><item jid='verona.lit/x'/></block></iq>`,
		"block", "romeo@montague.lit", "verona.lit/x")
	ok(`<iq type='set' id='1'><unblock xmlns='urn:xmpp:blocking'/></iq>`, "unblock")
	ok(`<iq type='set' id='1'><unblock xmlns='urn:xmpp:blocking'><item jid='a@b'/></unblock></iq>`, "unblock", "a@b")
	bad(`<iq type='set' id='1'><block xmlns='urn:xmpp:blocking'/></iq>`, blocking.ErrBadRequest)
	bad(`<iq type='get' id='1'><block xmlns='urn:xmpp:blocking'><item jid='a@b'/></block></iq>`, blocking.ErrBadRequest)
	bad(`<iq type='set' id='1'><blocklist xmlns='urn:xmpp:blocking'/></iq>`, blocking.ErrBadRequest)
	bad(`<iq type='set' id='1'><block xmlns='urn:example'><item jid='a@b'/></block></iq>`, blocking.ErrBadRequest)
	bad(`<iq type='set' id='1'><block xmlns='urn:xmpp:blocking'><item jid='@bad'/></block></iq>`, blocking.ErrJIDMalformed)
	bad(`<iq type='set' id='1'><block xmlns='urn:xmpp:blocking'><item/></block></iq>`, blocking.ErrJIDMalformed)
	bad(`<iq type='set' id='1'><unblock xmlns='urn:xmpp:blocking'><item jid=''/></unblock></iq>`, blocking.ErrJIDMalformed)

	items := []blocking.Item{{Local: "a", Domain: "b"}, {Domain: "c", Resource: "x'y"}}
	if p := string(blocking.Payload("block", items)); p != `<block xmlns='urn:xmpp:blocking'><item jid='a@b'/><item jid='c/x&#39;y'/></block>` {
		t.Fatalf("payload %s", p)
	}
	if p := string(blocking.Payload("unblock", nil)); p != `<unblock xmlns='urn:xmpp:blocking'/>` {
		t.Fatalf("payload %s", p)
	}
}

func items(ss ...string) []blocking.Item {
	var out []blocking.Item
	for _, s := range ss {
		it, err := blocking.ParseItem(s)
		if err != nil {
			panic(err)
		}
		out = append(out, it)
	}
	return out
}

// The store adds and removes, stops at its bound, and a cache on another client follows
// it: WaitApplied returns once the written revision is in.
func TestStoreAndCache(t *testing.T) {
	cli, prefix := etcdtest.Client(t), etcdtest.Prefix(t)
	s := blocking.New(cli, prefix, 3)
	c := blocking.NewCache(blocking.New(etcdtest.Client(t), prefix, 3), etcdtest.Log())
	ctx := etcdtest.Context(t)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	if c.Lookup("juliet@localhost") != nil {
		t.Fatal("a list before any block")
	}

	added, rev, err := s.Block(ctx, "localhost", "juliet", items("romeo@montague.lit", "verona.lit"))
	if err != nil || len(added) != 2 || rev == 0 {
		t.Fatalf("block: %v %d %v", added, rev, err)
	}
	if err := c.WaitApplied(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if !c.Blocks("juliet@localhost", "romeo", "montague.lit", "x") || !c.Blocks("juliet@localhost", "", "verona.lit", "") {
		t.Fatal("the cache does not block what was stored")
	}
	// Again: nothing added, the same revision.
	added, rev2, err := s.Block(ctx, "localhost", "juliet", items("verona.lit"))
	if err != nil || len(added) != 0 || rev2 != rev {
		t.Fatalf("block again: %v %d (want %d) %v", added, rev2, rev, err)
	}
	// Past the bound: nothing is written.
	if _, _, err := s.Block(ctx, "localhost", "juliet", items("a@b", "c@d")); !errors.Is(err, blocking.ErrTooMany) {
		t.Fatalf("past the bound: %v", err)
	}
	got, _, err := s.Get(ctx, "localhost", "juliet")
	if err != nil || len(got) != 2 {
		t.Fatalf("after a refused block: %v %v", got, err)
	}

	removed, rev, err := s.Unblock(ctx, "localhost", "juliet", items("verona.lit", "nobody@x"))
	if err != nil || len(removed) != 1 || removed[0].String() != "verona.lit" {
		t.Fatalf("unblock: %v %v", removed, err)
	}
	if err := c.WaitApplied(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if c.Blocks("juliet@localhost", "", "verona.lit", "") || !c.Blocks("juliet@localhost", "romeo", "montague.lit", "") {
		t.Fatal("unblock of one item")
	}
	removed, rev, err = s.Unblock(ctx, "localhost", "juliet", nil)
	if err != nil || len(removed) != 1 {
		t.Fatalf("unblock all: %v %v", removed, err)
	}
	if err := c.WaitApplied(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if c.Lookup("juliet@localhost") != nil {
		t.Fatal("a list after unblocking all")
	}
	if got, rev, err := s.Get(ctx, "localhost", "juliet"); got != nil || rev != 0 || err != nil {
		t.Fatalf("an empty list is no key: %v %d %v", got, rev, err)
	}

	// WaitApplied of a revision not written yet waits for its context.
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := c.WaitApplied(wctx, c.Applied()+1000); err == nil {
		t.Fatal("WaitApplied returned before the revision")
	}
}

// Concurrent blocks from several writers (several nodes at once) lose nothing and stop
// exactly at the bound.
func TestConcurrentBlocks(t *testing.T) {
	s := blocking.New(etcdtest.Client(t), etcdtest.Prefix(t), 10)
	ctx := etcdtest.Context(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, full := 0, 0
	for i := range 15 {
		wg.Go(func() {
			_, _, err := s.Block(ctx, "localhost", "juliet", items(fmt.Sprintf("u%d@x", i)))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, blocking.ErrTooMany):
				full++
			default:
				t.Errorf("block %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	got, _, err := s.Get(ctx, "localhost", "juliet")
	if ok != 10 || full != 5 || len(got) != 10 || err != nil {
		t.Fatalf("ok %d, full %d, stored %d (%v)", ok, full, len(got), err)
	}
}
