package delegation

import "testing"

func TestCheck(t *testing.T) {
	p := &Request{Host: "example.test", Entity: "pubsub.example.test", From: "juliet@example.test/balcony",
		OrigID: "q1", OrigTo: "example.test"}
	noTo := &Request{Host: "example.test", Entity: "pubsub.example.test", From: "juliet@example.test/balcony",
		OrigID: "q1"}
	ok := func() Answer {
		return Answer{Host: "example.test", From: "pubsub.example.test", OuterType: "result",
			InnerType: "result", InnerID: "q1", InnerTo: "juliet@example.test/balcony"}
	}
	tests := []struct {
		name    string
		p       *Request
		change  func(*Answer)
		outcome string
		valid   bool
	}{
		{"result", p, func(*Answer) {}, OutcomeResult, true},
		{"inner error", p, func(a *Answer) { a.InnerType = "error" }, OutcomeError, true},
		{"inner from the address asked", p, func(a *Answer) { a.InnerFrom = "example.test" }, OutcomeResult, true},
		{"no to: inner from the host", noTo, func(a *Answer) { a.InnerFrom = "example.test" }, OutcomeResult, true},
		{"no to: inner from the requester's bare JID", noTo, func(a *Answer) { a.InnerFrom = "juliet@example.test" }, OutcomeResult, true},
		{"no to: inner from someone else", noTo, func(a *Answer) { a.InnerFrom = "romeo@example.test" }, OutcomeInvalid, false},
		{"from another entity", p, func(a *Answer) { a.From = "evil.example.test" }, OutcomeInvalid, false},
		{"for another host", p, func(a *Answer) { a.Host = "other.test" }, OutcomeInvalid, false},
		{"outer error", p, func(a *Answer) { a.OuterType = "error" }, OutcomeUnavailable, false},
		{"bad wrapping", p, func(a *Answer) { a.Invalid = "not wrapped" }, OutcomeInvalid, false},
		{"inner get", p, func(a *Answer) { a.InnerType = "get" }, OutcomeInvalid, false},
		{"inner id", p, func(a *Answer) { a.InnerID = "q2" }, OutcomeInvalid, false},
		{"inner to", p, func(a *Answer) { a.InnerTo = "romeo@example.test/x" }, OutcomeInvalid, false},
		{"inner from another address", p, func(a *Answer) { a.InnerFrom = "juliet@example.test" }, OutcomeInvalid, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := ok()
			tc.change(&a)
			outcome, why := Check(tc.p, &a, "juliet@example.test")
			if outcome != tc.outcome || (why == "") != tc.valid {
				t.Fatalf("Check = %q, %q; want %q, valid %v", outcome, why, tc.outcome, tc.valid)
			}
		})
	}
}
