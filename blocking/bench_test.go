package blocking_test

import (
	"fmt"
	"testing"

	"github.com/switchboard-im/switchboard/blocking"
)

// Lookup of users without a list (most users) while others have one: the routing's cost.
func BenchmarkLookupMiss(b *testing.B) {
	for _, n := range []int{0, 1000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			c := blocking.NewCache(nil, nil)
			for i := range n {
				c.Set(fmt.Sprintf("user%d@localhost", i), []string{"spam@example.org"})
			}
			names := []string{"alice@localhost", "bob@localhost", "juliet@capulet.example", "romeo@montague.example"}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if c.Lookup(names[i&3]) != nil {
					b.Fatal("found")
				}
				i++
			}
		})
	}
}
