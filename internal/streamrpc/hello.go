package streamrpc

import (
	"errors"
	"fmt"
	"time"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
)

// SendHello sends the dialing side's first message.
func SendHello(s Stream, h *streamv1.Hello) error {
	if err := s.Send(&streamv1.Envelope{Kind: &streamv1.Envelope_Hello{Hello: h}}); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	return nil
}

// RecvHello reads the first message on an accepted stream, which must be a
// Hello, waiting at most timeout. On error the caller must end the stream
// (return from the RPC handler), which also stops the read in flight.
func RecvHello(s Stream, timeout time.Duration) (*streamv1.Hello, error) {
	type result struct {
		env *streamv1.Envelope
		err error
	}
	ch := make(chan result, 1)
	go func() {
		env, err := s.Recv()
		ch <- result{env, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("read hello: %w", r.err)
		}
		h := r.env.GetHello()
		if h == nil {
			return nil, errors.New("first message on the stream must be a hello")
		}
		if h.Id == "" || h.Component == "" {
			return nil, errors.New("hello: id and component are required")
		}
		return h, nil
	case <-t.C:
		return nil, fmt.Errorf("no hello within %v", timeout)
	case <-s.Context().Done():
		return nil, s.Context().Err()
	}
}
