// Package liberviatest holds the end-to-end tests of Switchboard with libervia-pubsub (the
// Debian package, a Twisted XEP-0114 component) as the PEP service of host localhost:
// XEP-0355 delegation of pubsub, pubsub#owner and MAM, and XEP-0356 roster, message and
// presence privileges. Two real users, alice and bob (contacts with presence), do what
// a client would: publish to alice's PEP node, receive the notification as her contact,
// read the node's archive (MAM), configure and delete the node.
//
// The tests need a running Switchboard and libervia-pubsub, so `go test ./...` skips
// them. deploy/test-libervia.sh sets everything up (PostgreSQL, Switchboard, the
// component) and runs them with:
//
//	SWITCHBOARD_LIBERVIA_C2S     the c2s (STARTTLS) address, host:port
//	SWITCHBOARD_LIBERVIA_USER1   localpart:password of the publisher (alice)
//	SWITCHBOARD_LIBERVIA_USER2   localpart:password of her contact (bob)
//	SWITCHBOARD_LIBERVIA_PUBSUB  the component's JID, default pubsub.localhost
//
// The users are on host localhost. It has no non-test code.
package liberviatest
