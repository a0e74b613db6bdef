package nodelink

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/switchboard-im/switchboard/nodelink/pb"
)

// PackedAnswers carry every field of every answer, empty ones and the inner stanza
// included; a cut or overlong field is an error, not a wrong answer.
func TestPackedAnswersRoundTrip(t *testing.T) {
	in := []*pb.DelegationAnswer{
		{OuterId: "sbd:n1:1", Host: "localhost", From: "pubsub.localhost", OuterType: "result", InnerType: "result",
			InnerId: "q1", InnerTo: "alice@localhost/r", InnerFrom: "localhost", Inner: []byte("<iq type='result' id='q1'/>")},
		{OuterId: "sbd:n1:2", Host: "localhost", From: "pubsub.localhost", OuterType: "error"},
		{OuterId: "sbd:n1:3", Host: "localhost", From: "pubsub.localhost", OuterType: "result", Invalid: "no <forwarded/>"},
		{OuterId: "sbd:n1:4", InnerTo: string(make([]byte, 300)), Inner: []byte(strings.Repeat("é", 200))},
	}
	data := packAnswers(nil, in)
	out, err := unpackAnswers(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("%d answers, want %d", len(out), len(in))
	}
	for i, a := range in {
		if out[i] != viewOf(a) {
			t.Fatalf("answer %d: got %+v, want %+v", i, out[i], viewOf(a))
		}
	}
	for _, bad := range [][]byte{data[:len(data)-1], append(append([]byte{}, data...), 5, 'x'), {0x80},
		append([]byte{byte(len(in) + 1)}, data[1:]...), append([]byte{byte(len(in) - 1)}, data[1:]...)} {
		if _, err := unpackAnswers(bad); err == nil {
			t.Fatalf("%q: no error", bad)
		}
	}
}

// What the clients' node does with a burst of 20 answers from the component's node, as
// the wire brings it: unmarshal a DelegationAnswers (proto version 1) and read each
// answer's fields, or unmarshal a PackedAnswers (2) and unpack it.
func BenchmarkAnswersDecode(b *testing.B) {
	var answers []*pb.DelegationAnswer
	for i := range 20 {
		answers = append(answers, &pb.DelegationAnswer{OuterId: fmt.Sprintf("sbd:n1:%016x", i), Host: "localhost",
			From: "bench.localhost", OuterType: "result", InnerType: "result", InnerId: fmt.Sprintf("q%d.%d", i%10, i),
			InnerTo: fmt.Sprintf("bench%d@localhost/r%d", i%10, i%10), Inner: []byte(fmt.Sprintf("<iq type='result' id='q%d.%d'/>", i%10, i))})
	}
	v1, err := proto.Marshal(&pb.DelegationAnswers{Answers: answers})
	if err != nil {
		b.Fatal(err)
	}
	v2, err := proto.Marshal(&pb.PackedAnswers{Data: packAnswers(nil, answers)})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("DelegationAnswers", func(b *testing.B) {
		b.SetBytes(int64(len(v1)))
		b.ReportAllocs()
		for b.Loop() {
			var m pb.DelegationAnswers
			if err := proto.Unmarshal(v1, &m); err != nil {
				b.Fatal(err)
			}
			for _, a := range m.Answers {
				if viewOf(a).OuterID == "" {
					b.Fatal("empty")
				}
			}
		}
	})
	b.Run("PackedAnswers", func(b *testing.B) {
		b.SetBytes(int64(len(v2)))
		b.ReportAllocs()
		for b.Loop() {
			var m pb.PackedAnswers
			if err := proto.Unmarshal(v2, &m); err != nil {
				b.Fatal(err)
			}
			views, err := unpackAnswers(m.Data)
			if err != nil || len(views) != 20 {
				b.Fatal(err)
			}
		}
	})
}
