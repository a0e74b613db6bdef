//go:build unix

package xmpp

import (
	"crypto/tls"
	"errors"
	"syscall"
)

// WaitReadable waits, without reading, until the connection has input, has ended or
// failed, or its read deadline has passed (then it returns the timeout). The TLS layer
// must hold no unread input, as when Next returned ErrParked: only the socket is watched.
// Parked this way, a session waits in a few frames of the goroutine that calls it, not
// under the whole stack of its reading loop.
func (c *Conn) WaitReadable() error {
	nc := c.Conn
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil // nothing to wait on: the reader will block instead
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var b [1]byte
	return rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// Input, the end of the stream or an error: the reader sees which.
		return !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR)
	})
}
