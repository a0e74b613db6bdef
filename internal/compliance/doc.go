// Package compliance is an end-to-end check suite of what modern XMPP clients rely on,
// written against the protocols only, so that the same checks run against any server:
// Switchboard, Prosody, ejabberd. Each check is a subtest named by an id (rfc6121.*,
// xep0198.*, xep0280.*, xep0160.*, xep0191.*, xep0352.*) that opens its own fresh
// connections as two existing users, alice and bob, and asserts what a user observes:
// a message arrives (or does not), a copy appears on another resource, a reply carries
// the right error, a resumed stream gets back what it missed.
//
// The tests need a running server, so `go test ./...` skips them. They run with:
//
//	COMPLIANCE_C2S     the server's c2s (STARTTLS) address, host:port (unset: skip)
//	COMPLIANCE_DOMAIN  the XMPP domain of the accounts (default localhost)
//	COMPLIANCE_USERS   two existing accounts, local:password,local:password
//	COMPLIANCE_NAME    a label for the output (default the address)
//
// The connection is mellium's: STARTTLS without certificate verification, SASL with the
// best of SCRAM-SHA-256, SCRAM-SHA-1 and PLAIN the server offers, resource binding with a
// resource of the suite's own. At the end the test prints one line per check and a score:
//
//	CHECK <name> <id> PASS|FAIL <short reason>
//	SCORE <name> <passed>/<total>
//
// Checks clean up after themselves (blocklist emptied, roster items removed, streams
// closed cleanly so that no stream-management session is left waiting for resumption),
// so the suite can run again against the same accounts. deploy/compare-servers.sh runs
// it against Prosody, ejabberd and a Switchboard node side by side. It has no non-test
// code.
package compliance
