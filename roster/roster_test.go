package roster_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-im/switchboard/internal/etcdtest"
	"github.com/switchboard-im/switchboard/roster"
)

func TestMain(m *testing.M) { etcdtest.Main(m, "roster-test") }

func set(jid, name string, groups ...string) roster.Request {
	return roster.Request{Item: roster.Item{JID: jid, Name: name, Groups: groups}}
}

// Concurrent writers (as on several nodes) never lose an item: updates are
// compare-and-swap, retried on conflict.
func TestConcurrentUpdatesKeepEveryItem(t *testing.T) {
	s := roster.New(etcdtest.Client(t), etcdtest.Prefix(t), 0)
	ctx := etcdtest.Context(t)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			_, changed, err := s.Update(ctx, "localhost", "juliet", func(r *roster.Roster) (bool, error) {
				_, _, err := roster.Apply(r, set(fmt.Sprintf("c%d@localhost", i), ""))
				return err == nil, err
			})
			if err != nil || !changed {
				t.Errorf("update %d: %v %v", i, changed, err)
			}
		})
	}
	wg.Wait()
	r, err := s.Get(ctx, "localhost", "juliet")
	if err != nil || len(r.Items) != 20 {
		t.Fatalf("roster after 20 concurrent adds: %d items, %v", len(r.Items), err)
	}
}

func TestApplyAndVersions(t *testing.T) {
	s := roster.New(etcdtest.Client(t), etcdtest.Prefix(t), 2)
	ctx := etcdtest.Context(t)
	r, err := s.Get(ctx, "localhost", "romeo")
	if err != nil || len(r.Items) != 0 || r.Version() != "0" {
		t.Fatalf("empty roster %+v %v", r, err)
	}
	upd := func(req roster.Request) (*roster.Roster, roster.Item, error) {
		var it roster.Item
		r, _, err := s.Update(ctx, "localhost", "romeo", func(r *roster.Roster) (bool, error) {
			var err error
			it, _, err = roster.Apply(r, req)
			return err == nil, err
		})
		return r, it, err
	}
	r1, it, err := upd(set("juliet@localhost", "Juliet", "Capulets"))
	if err != nil || it.Subscription != roster.SubNone || r1.Ver == 0 {
		t.Fatalf("add: %+v %+v %v", r1, it, err)
	}
	// An update keeps the subscription state, which only presence subscriptions change.
	if _, _, err := s.Update(ctx, "localhost", "romeo", func(r *roster.Roster) (bool, error) {
		r.Items[r.Find("juliet@localhost")].Subscription = roster.SubBoth
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	r2, it, err := upd(set("juliet@localhost", "J"))
	if err != nil || it.Subscription != roster.SubBoth || it.Name != "J" || len(it.Groups) != 0 || r2.Ver <= r1.Ver {
		t.Fatalf("update: %+v %+v %v", r2, it, err)
	}
	if _, _, err := upd(set("nurse@localhost", "")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := upd(set("tybalt@localhost", "")); !errors.Is(err, roster.ErrTooMany) {
		t.Fatalf("third item with a limit of 2: %v", err)
	}
	// The limit lowered below the roster's size (a reload): it may change and shrink,
	// not grow.
	s.SetMaxItems(1)
	if _, it, err := upd(set("nurse@localhost", "Nurse")); err != nil || it.Name != "Nurse" {
		t.Fatalf("rename over a lowered limit: %+v %v", it, err)
	}
	if _, _, err := upd(set("tybalt@localhost", "")); !errors.Is(err, roster.ErrTooMany) {
		t.Fatalf("growing over a lowered limit: %v", err)
	}
	s.SetMaxItems(2)
	if _, _, err := upd(roster.Request{Item: roster.Item{JID: "paris@localhost"}, Remove: true}); !errors.Is(err, roster.ErrItemNotFound) {
		t.Fatalf("removing an absent item: %v", err)
	}
	_, it, err = upd(roster.Request{Item: roster.Item{JID: "juliet@localhost"}, Remove: true})
	if err != nil || it.Subscription != roster.SubRemove {
		t.Fatalf("remove: %+v %v", it, err)
	}
	got, _ := s.Get(ctx, "localhost", "romeo")
	if len(got.Items) != 1 || got.Items[0].JID != "nurse@localhost" {
		t.Fatalf("roster %+v", got)
	}
}

func TestParseSet(t *testing.T) {
	for raw, want := range map[string]error{
		`<iq type='set'><query xmlns='jabber:iq:roster'><item jid='a@b' name='A'><group>g</group></item></query></iq>`: nil,
		`<iq type='set'><query xmlns='jabber:iq:roster'/></iq>`:                                                        roster.ErrBadRequest,
		`<iq type='set'><query xmlns='jabber:iq:other'><item jid='a@b'/></query></iq>`:                                 roster.ErrBadRequest,
		`<iq type='set'><query xmlns='jabber:iq:roster'><item jid=''/></query></iq>`:                                   roster.ErrJIDMalformed,
		`<iq type='set'><query xmlns='jabber:iq:roster'><item jid='a@b'><group/></item></query></iq>`:                  roster.ErrNotAcceptable,
	} {
		req, err := roster.ParseSet([]byte(raw))
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", raw, err, want)
		}
		if want == nil && (req.Item.JID != "a@b" || req.Item.Name != "A" || len(req.Item.Groups) != 1) {
			t.Errorf("%s: %+v", raw, req)
		}
	}
	q := string(roster.Query(&roster.Roster{Ver: 7, Items: []roster.Item{{JID: "a@b", Name: "x'<", Ask: true, Groups: []string{"g"}}}}))
	if q != `<query xmlns='jabber:iq:roster' ver='7'><item jid='a@b' name='x&#39;&lt;' subscription='none' ask='subscribe'><group>g</group></item></query>` {
		t.Errorf("query %s", q)
	}
}

// limits.max_etcd_requests: past the bound a request waits for a turn (or its context),
// so a node's etcd load from client stanzas is bounded whatever the number of sessions.
func TestRequestsWaitForATurn(t *testing.T) {
	s := roster.New(etcdtest.Client(t), etcdtest.Prefix(t), 0)
	s.SetMaxRequests(1)
	ctx := etcdtest.Context(t)
	inside, release := make(chan struct{}), make(chan struct{})
	go func() {
		_, _, _ = s.Update(ctx, "localhost", "a", func(r *roster.Roster) (bool, error) {
			close(inside)
			<-release
			return false, nil
		})
	}()
	<-inside
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := s.Get(short, "localhost", "b"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a second request with the only turn taken: %v", err)
	}
	close(release)
	if _, err := s.Get(ctx, "localhost", "b"); err != nil {
		t.Fatalf("after the turn was given back: %v", err)
	}
	s.SetMaxRequests(0) // no bound
	if _, err := s.Get(ctx, "localhost", "b"); err != nil {
		t.Fatal(err)
	}
}
