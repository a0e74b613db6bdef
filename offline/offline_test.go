package offline_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-im/switchboard/internal/etcdtest"
	"github.com/switchboard-im/switchboard/offline"
)

func TestMain(m *testing.M) { etcdtest.Main(m, "offline-test") }

// Concurrent appends (several nodes' queues at once) lose nothing and stop exactly at
// the count bound; a take gets the list once; the byte bound holds too.
func TestAppendBoundsAndTake(t *testing.T) {
	s := offline.New(etcdtest.Client(t), etcdtest.Prefix(t), 10, 1<<20)
	ctx := etcdtest.Context(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	stored, full := 0, 0
	for i := range 15 {
		wg.Go(func() {
			err := s.Append(ctx, "localhost", "juliet", fmt.Appendf(nil, "<message id='%d'/>", i), time.Now())
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				stored++
			case errors.Is(err, offline.ErrFull):
				full++
			default:
				t.Errorf("append %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if stored != 10 || full != 5 {
		t.Fatalf("stored %d, full %d; want 10 and 5", stored, full)
	}
	msgs, err := s.Take(ctx, "localhost", "juliet")
	if err != nil || len(msgs) != 10 {
		t.Fatalf("take: %d messages, %v", len(msgs), err)
	}
	if again, err := s.Take(ctx, "localhost", "juliet"); err != nil || again != nil {
		t.Fatalf("second take: %v, %v", again, err)
	}
	s.SetLimits(10, 40)
	if err := s.Append(ctx, "localhost", "romeo", make([]byte, 30), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, "localhost", "romeo", make([]byte, 30), time.Now()); !errors.Is(err, offline.ErrFull) {
		t.Fatalf("past the byte bound: %v", err)
	}
}
