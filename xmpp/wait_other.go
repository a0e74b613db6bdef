//go:build !unix

package xmpp

// WaitReadable cannot wait without reading here: it returns at once and the reader
// blocks instead.
func (c *Conn) WaitReadable() error { return nil }
