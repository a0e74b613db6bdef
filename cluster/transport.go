package cluster

import (
	"crypto/tls"
	"fmt"
	"math"
	"math/bits"
	"sync"

	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// RemoteDialOptions, RemoteCallOptions and RemoteServerOptions tune the gRPC connections
// that carry actor messages between nodes (protoactor's remote). They replace protoactor's
// defaults, of which there is one: insecure transport credentials, kept here.
//
// Their buffers, for frames and for (un)marshalling, come from remoteBuffers: gRPC's
// default pool hands a message of 33 KiB to 1 MiB a 1 MiB buffer and clears all of it
// first, every time. A batch of remote messages is usually that size, so clearing was 4%
// of each node's CPU in a cross-node delegation run (BENCHMARKS.md).
//
// The receive limit is lifted from gRPC's 4 MiB: one gRPC message is a batch of up to
// 1000 actor messages (protoactor's endpoint writer), each up to 64 KiB of stanzas for one
// session plus one more stanza (limits.max_stanza_bytes), and a batch the peer refuses
// ends the connection between the nodes and loses every message in it (a burst of 50 kB
// messages did: TestCrossNodeBurstOfBigStanzas). Only cluster members may reach the
// remote port (README): they can send any actor message anyway.
//
// With tlsConf (TLSConfigs' client config) connections to other nodes are mutual TLS; without,
// plain (loopback only, or cluster.insecure).
func RemoteDialOptions(tlsConf *tls.Config) []grpc.DialOption {
	creds := insecure.NewCredentials()
	if tlsConf != nil {
		creds = credentials.NewTLS(tlsConf)
	}
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		experimental.WithBufferPool(remoteBuffers),
	}
}

// RemoteCallOptions: see RemoteDialOptions.
func RemoteCallOptions() []grpc.CallOption {
	return []grpc.CallOption{grpc.ForceCodecV2(remoteCodec{})}
}

// RemoteServerOptions: see RemoteDialOptions. With tlsConf (TLSConfigs' server config) only a
// peer with a certificate the cluster CA signed gets a connection.
func RemoteServerOptions(tlsConf *tls.Config) []grpc.ServerOption {
	opts := []grpc.ServerOption{
		experimental.BufferPool(remoteBuffers),
		grpc.ForceServerCodecV2(remoteCodec{}),
		grpc.MaxRecvMsgSize(RemoteMaxMessage),
	}
	if tlsConf != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConf)))
	}
	return opts
}

// RemoteMaxMessage is the largest batch of actor messages a node accepts from a peer.
const RemoteMaxMessage = math.MaxInt32

var remoteBuffers mem.BufferPool = newBufferPool()

// bufferPool is a gRPC buffer pool with a size class for every power of two from 256 B
// to 4 MiB. Buffers are handed out as they were returned, not cleared: gRPC writes a
// message's bytes over the length it asks for before reading any of them.
type bufferPool struct {
	classes [bufferClasses]sync.Pool
}

const (
	bufferMinShift = 8  // 256 B
	bufferClasses  = 15 // up to 4 MiB
)

func newBufferPool() *bufferPool { return &bufferPool{} }

// class is the smallest size class that holds n bytes (bufferClasses if none does).
func class(n int) int {
	if n <= 1<<bufferMinShift {
		return 0
	}
	return bits.Len(uint(n-1)) - bufferMinShift
}

func (p *bufferPool) Get(n int) *[]byte {
	c := class(n)
	if c >= bufferClasses {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<(c+bufferMinShift))
	return &b
}

// Put keeps a buffer of exactly a class's size; others (the oversize ones) go to the GC.
func (p *bufferPool) Put(b *[]byte) {
	n := cap(*b)
	c := class(n)
	if c >= bufferClasses || n != 1<<(c+bufferMinShift) {
		return
	}
	p.classes[c].Put(b)
}

// remoteCodec is gRPC's proto codec with its buffers from remoteBuffers.
type remoteCodec struct{}

func (remoteCodec) Name() string { return "proto" }

func (remoteCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, err := messageOf(v)
	if err != nil {
		return nil, err
	}
	if rm, ok := m.(*remote.RemoteMessage); ok {
		if b := rm.GetMessageBatch(); b != nil {
			sentBatch(b) // it leaves the queue for its node (queues.go)
		}
	}
	// UseCachedSize reuses what Size just computed: m is not changed meanwhile.
	size := proto.Size(m)
	buf := remoteBuffers.Get(size)
	if _, err := (proto.MarshalOptions{UseCachedSize: true}).MarshalAppend((*buf)[:0], m); err != nil {
		remoteBuffers.Put(buf)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(buf, remoteBuffers)}, nil
}

func (remoteCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, err := messageOf(v)
	if err != nil {
		return err
	}
	buf := data.MaterializeToBuffer(remoteBuffers)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

func messageOf(v any) (proto.Message, error) {
	switch m := v.(type) {
	case protoadapt.MessageV2:
		return m, nil
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(m), nil
	}
	return nil, fmt.Errorf("cluster transport: %T is not a protobuf message", v)
}
