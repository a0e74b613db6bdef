// Package federationtest holds the end-to-end tests of Switchboard's RFC 6120
// server-to-server federation with another XMPP server as the reference peer (Prosody,
// Debian's package): two real users, alice on Switchboard and bob on the peer, each
// logged in to their own server, do what clients would across the two domains: messages
// to full and bare JIDs both ways, IQ ping to the other server, an IQ to the other user's
// full JID and its answer, disco#info of the other server, errors for a user who does not
// exist there, 200 messages each way that arrive complete and in order, and the presence
// subscription handshake (RFC 6121 §3) both ways with the presence that follows it.
//
// The tests need both servers running and federating, so `go test ./...` skips them.
// deploy/test-federation-prosody.sh sets everything up (a private CA, Prosody,
// Switchboard) and runs them with:
//
//	SWITCHBOARD_FED_SB_C2S       Switchboard's c2s (STARTTLS) address, host:port
//	SWITCHBOARD_FED_SB_DOMAIN    the domain Switchboard serves (default sb.test)
//	SWITCHBOARD_FED_SB_USER      localpart:password of alice, on Switchboard
//	SWITCHBOARD_FED_PEER_C2S     the peer's c2s (STARTTLS) address, host:port
//	SWITCHBOARD_FED_PEER_DOMAIN  the domain the peer serves (default pr.test)
//	SWITCHBOARD_FED_PEER_USER    localpart:password of bob, on the peer
//	SWITCHBOARD_FED_PEER_NAME    the peer's name, for messages (default prosody)
//
// Clients log in with the first SASL mechanism the server offers of SCRAM-SHA-256,
// SCRAM-SHA-1 (Prosody 0.12) and PLAIN, over STARTTLS without certificate checks. It has
// no non-test code.
package federationtest
