package cluster

import "testing"

// Every request gets a buffer of its length whose capacity is the smallest class that
// holds it; past the largest class, an exact one that is never pooled.
func TestBufferPoolClasses(t *testing.T) {
	p := newBufferPool()
	for _, c := range []struct{ n, cap int }{
		{0, 256}, {1, 256}, {256, 256}, {257, 512}, {4096, 4096}, {4097, 8192},
		{33 << 10, 64 << 10}, {1 << 20, 1 << 20}, {4 << 20, 4 << 20}, {4<<20 + 1, 4<<20 + 1},
	} {
		b := p.Get(c.n)
		if len(*b) != c.n || cap(*b) != c.cap {
			t.Errorf("Get(%d): len %d cap %d, want len %d cap %d", c.n, len(*b), cap(*b), c.n, c.cap)
		}
		p.Put(b)
	}
}

// A returned buffer serves the next request of its class (sync.Pool may drop it, so
// try a few times), at the new length and with its whole capacity.
func TestBufferPoolReuse(t *testing.T) {
	p := newBufferPool()
	for range 10 {
		b := p.Get(3000)
		(*b)[0] = 42
		p.Put(b)
		c := p.Get(2500)
		if &(*c)[0] == &(*b)[0] {
			if len(*c) != 2500 || cap(*c) != 4096 {
				t.Fatalf("reused buffer: len %d cap %d", len(*c), cap(*c))
			}
			return
		}
	}
	t.Fatal("a returned buffer was never reused")
}

// A buffer whose capacity is not a class size is not kept.
func TestBufferPoolRejectsOdd(t *testing.T) {
	p := newBufferPool()
	odd := make([]byte, 100, 300)
	for range 10 {
		p.Put(&odd)
		if b := p.Get(300); cap(*b) == 300 {
			t.Fatal("an odd-sized buffer was pooled")
		}
	}
}
