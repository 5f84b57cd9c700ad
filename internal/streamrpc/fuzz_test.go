package streamrpc

import (
	"context"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
)

// fuzzStream is an in-memory Stream: Recv hands out the given envelopes,
// then waits until the peer has sent `want` responses (or a deadline
// passes) and reports the end of the stream. Waiting first lets every
// request be answered before Run cancels the handlers.
type fuzzStream struct {
	ctx  context.Context
	in   []*streamv1.Envelope
	want int

	mu   sync.Mutex
	sent []*streamv1.Envelope
	note chan struct{}
}

func newFuzzStream(ctx context.Context, in []*streamv1.Envelope, want int) *fuzzStream {
	return &fuzzStream{ctx: ctx, in: in, want: want, note: make(chan struct{}, 1)}
}

func (s *fuzzStream) Context() context.Context { return s.ctx }

func (s *fuzzStream) Send(env *streamv1.Envelope) error {
	s.mu.Lock()
	s.sent = append(s.sent, proto.Clone(env).(*streamv1.Envelope))
	s.mu.Unlock()
	select {
	case s.note <- struct{}{}:
	default:
	}
	return nil
}

func (s *fuzzStream) Recv() (*streamv1.Envelope, error) {
	if len(s.in) > 0 {
		env := s.in[0]
		s.in = s.in[1:]
		return env, nil
	}
	deadline := time.NewTimer(2 * time.Second)
	defer deadline.Stop()
	for {
		if len(s.responses()) >= s.want {
			return nil, io.EOF
		}
		select {
		case <-s.note:
		case <-deadline.C:
			return nil, io.EOF
		case <-s.ctx.Done():
			return nil, s.ctx.Err()
		}
	}
}

func (s *fuzzStream) responses() []*streamv1.Response {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*streamv1.Response
	for _, env := range s.sent {
		if r := env.GetResponse(); r != nil {
			out = append(out, r)
		}
	}
	return out
}

// FuzzEnvelope decodes two envelopes from arbitrary bytes, as a Peer's
// stream would from the wire, and feeds them through a Peer's receive path.
// The Peer must not panic or hang, and must answer every request exactly
// once with its id: a bad request gets an error, never silence.
func FuzzEnvelope(f *testing.F) {
	seed := func(env *streamv1.Envelope) []byte {
		b, err := proto.Marshal(env)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	req := func(id string) *streamv1.Envelope {
		return &streamv1.Envelope{Kind: &streamv1.Envelope_Request{Request: &streamv1.Request{Id: id, Deadline: timestamppb.New(time.Now().Add(time.Minute))}}}
	}
	past := &streamv1.Envelope{Kind: &streamv1.Envelope_Request{Request: &streamv1.Request{Id: "p", Deadline: &timestamppb.Timestamp{Seconds: -1 << 62}}}}
	cancel := &streamv1.Envelope{Kind: &streamv1.Envelope_Cancel{Cancel: &streamv1.Cancel{RequestId: "r1"}}}
	resp := &streamv1.Envelope{Kind: &streamv1.Envelope_Response{Response: &streamv1.Response{RequestId: "r1"}}}
	hello := &streamv1.Envelope{Kind: &streamv1.Envelope_Hello{Hello: &streamv1.Hello{Component: "drone", Id: "n-1"}}}
	hb := &streamv1.Envelope{Kind: &streamv1.Envelope_Heartbeat{Heartbeat: &streamv1.Heartbeat{SentAt: timestamppb.Now()}}}
	f.Add(seed(req("r1")), seed(cancel))
	f.Add(seed(req("r1")), seed(req("r1")))
	f.Add(seed(req("")), seed(resp))
	f.Add(seed(past), seed(hb))
	f.Add(seed(hello), seed(hello))
	f.Add([]byte{}, []byte{0xff, 0xff})

	f.Fuzz(func(t *testing.T, a, b []byte) {
		var in []*streamv1.Envelope
		for _, data := range [][]byte{a, b} {
			env := &streamv1.Envelope{}
			if err := proto.Unmarshal(data, env); err != nil {
				if err.Error() == "" {
					t.Fatal("unmarshal failed with an empty message")
				}
				continue
			}
			in = append(in, env)
		}
		if len(in) == 0 {
			return
		}
		checkHello(t, in[0])

		var wantIDs []string
		for _, env := range in {
			if r := env.GetRequest(); r != nil {
				wantIDs = append(wantIDs, r.GetId())
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st := newFuzzStream(ctx, in, len(wantIDs))
		handler := func(ctx context.Context, req *streamv1.Request) *streamv1.Response {
			return &streamv1.Response{}
		}
		p := NewPeer(st, handler, Options{HeartbeatInterval: time.Hour})
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cancel()
			<-done
			t.Fatalf("Run did not return within 5s of the stream ending (input %v)", in)
		}

		var gotIDs []string
		for _, r := range st.responses() {
			gotIDs = append(gotIDs, r.GetRequestId())
			if r.GetRequestId() == "" && r.GetError().GetCode() != CodeInvalid {
				t.Fatalf("request without id answered %v, want a %q error", r, CodeInvalid)
			}
			if e := r.GetError(); e != nil && e.GetMessage() == "" {
				t.Fatalf("error response without a message: %v", r)
			}
		}
		slices.Sort(wantIDs)
		slices.Sort(gotIDs)
		if !slices.Equal(wantIDs, gotIDs) {
			t.Fatalf("requests %q were answered as %q", wantIDs, gotIDs)
		}
	})
}

// checkHello gives env to RecvHello as the first message of a stream: it
// must accept only a hello with id and component, and say why otherwise.
func checkHello(t *testing.T, env *streamv1.Envelope) {
	t.Helper()
	st := newFuzzStream(context.Background(), []*streamv1.Envelope{env}, 0)
	h, err := RecvHello(st, 5*time.Second)
	if err != nil {
		if err.Error() == "" {
			t.Fatal("RecvHello failed with an empty message")
		}
		if env.GetHello().GetId() != "" && env.GetHello().GetComponent() != "" {
			t.Fatalf("RecvHello refused a hello with id and component: %v", err)
		}
		return
	}
	if h.GetId() == "" || h.GetComponent() == "" {
		t.Fatalf("RecvHello accepted %v", h)
	}
}
