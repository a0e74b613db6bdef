package nodelink

import (
	"encoding/binary"
	"errors"
	"slices"
	"unsafe"

	"github.com/switchboard-im/switchboard/delegation"
	"github.com/switchboard-im/switchboard/nodelink/pb"
)

// Answer is a delegation answer unwrapped on the managing entity's node, as the
// requester's node reads it: from a DelegationAnswer, or sliced out of PackedAnswers.
type Answer struct {
	OuterID string
	delegation.Answer
	Inner string // the inner stanza without from and to
}

func viewOf(m *pb.DelegationAnswer) Answer {
	return Answer{OuterID: m.OuterId, Answer: delegation.Answer{Host: m.Host, From: m.From, OuterType: m.OuterType,
		Invalid: m.Invalid, InnerType: m.InnerType, InnerID: m.InnerId, InnerTo: m.InnerTo, InnerFrom: m.InnerFrom},
		Inner: string(m.Inner)}
}

// packAnswers appends answers to b in PackedAnswers' layout: their number, then per
// answer its ten fields in DelegationAnswer's order, each as uvarint length and bytes.
func packAnswers(b []byte, answers []*pb.DelegationAnswer) []byte {
	n := 0
	for _, a := range answers {
		n += len(a.OuterId) + len(a.Host) + len(a.From) + len(a.OuterType) + len(a.Invalid) + len(a.InnerType) +
			len(a.InnerId) + len(a.InnerTo) + len(a.InnerFrom) + len(a.Inner) + 2*10
	}
	b = slices.Grow(b, n+binary.MaxVarintLen64)
	b = binary.AppendUvarint(b, uint64(len(answers)))
	for _, a := range answers {
		for _, f := range [...]string{a.OuterId, a.Host, a.From, a.OuterType, a.Invalid, a.InnerType, a.InnerId, a.InnerTo, a.InnerFrom} {
			b = binary.AppendUvarint(b, uint64(len(f)))
			b = append(b, f...)
		}
		b = binary.AppendUvarint(b, uint64(len(a.Inner)))
		b = append(b, a.Inner...)
	}
	return b
}

var errPackedAnswers = errors.New("malformed PackedAnswers")

// unpackAnswers reads what packAnswers wrote. The views' fields are strings over data
// itself, not a copy: data must not change afterwards (it is a PackedAnswers' Data, which
// protobuf decoded into a buffer of the message's own and nothing writes again).
func unpackAnswers(data []byte) ([]Answer, error) {
	count, off := binary.Uvarint(data)
	if off <= 0 || count > uint64(len(data)/10) {
		return nil, errPackedAnswers
	}
	s := unsafe.String(unsafe.SliceData(data), len(data))
	out := make([]Answer, 0, count)
	for off < len(data) {
		var f [10]string
		for i := range f {
			n, k := uint64(data[off]), 1 // most fields are shorter than 128 bytes
			if n >= 0x80 {
				n, k = binary.Uvarint(data[off:])
			}
			if k <= 0 || n > uint64(len(data)-off-k) {
				return nil, errPackedAnswers
			}
			off += k
			f[i] = s[off : off+int(n)]
			off += int(n)
			if off == len(data) && i < len(f)-1 {
				return nil, errPackedAnswers
			}
		}
		out = append(out, Answer{OuterID: f[0], Answer: delegation.Answer{Host: f[1], From: f[2], OuterType: f[3],
			Invalid: f[4], InnerType: f[5], InnerID: f[6], InnerTo: f[7], InnerFrom: f[8]}, Inner: f[9]})
	}
	if uint64(len(out)) != count {
		return nil, errPackedAnswers
	}
	return out, nil
}
