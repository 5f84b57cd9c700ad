package streamrpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
)

// Errors of a Hub.
var (
	// ErrReplaced is the cause a connection is cancelled with when a newer
	// one with the same identity takes its place. One identity holds one
	// stream: keeping the old one open behind the new would leave a stream
	// nobody tracks, and whichever ended first would decide whether the
	// peer counts as there.
	ErrReplaced = errors.New("replaced by a newer stream with the same identity")
	// ErrRefused marks an identity refused with Hub.Refuse: it is never
	// admitted again.
	ErrRefused = errors.New("refused")
	// ErrNotConnected is returned by Await and Call when the peer was not
	// connected (again) before the context ended.
	ErrNotConnected = errors.New("not connected")
	// ErrHubClosed is returned to calls waiting for a peer when the hub is
	// closed.
	ErrHubClosed = errors.New("closed")
)

// HubConfig configures a Hub.
type HubConfig struct {
	// Gone, when set, reports that an identity will never be admitted
	// again for a reason kept outside the hub (pilot's revocation list):
	// Admit refuses it and callers waiting for it fail at once with the
	// error Gone returns, rather than at their deadline. It must not call
	// the hub.
	Gone   func(id string) error
	Logger *slog.Logger
}

// Hub is the serving side's registry of connected peers, keyed by verified
// identity: pilot's frontgates, a frontgate's drones. It admits one stream
// per identity (a newer one cancels the older with ErrReplaced), lets
// callers wait for an identity to connect, and sends requests that are
// re-sent on the peer's next stream when the current one ends before the
// answer. I is what the server keeps about each connection (its hello, say).
type Hub[I any] struct {
	cfg HubConfig
	log *slog.Logger

	mu      sync.Mutex
	conns   map[string]*Conn[I]
	refused map[string]error
	// changed is closed and replaced on every change of conns, waking the
	// callers that wait for a peer.
	changed chan struct{}
	closed  chan struct{}
	once    sync.Once
}

// Conn is one admitted stream.
type Conn[I any] struct {
	ID    string
	Peer  *Peer
	Info  I
	Since time.Time

	cancel context.CancelCauseFunc
}

// Cancel ends the connection's stream with cause.
func (c *Conn[I]) Cancel(cause error) { c.cancel(cause) }

// NewHub returns an empty hub.
func NewHub[I any](cfg HubConfig) *Hub[I] {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Hub[I]{cfg: cfg, log: cfg.Logger, conns: map[string]*Conn[I]{}, refused: map[string]error{}, changed: make(chan struct{}), closed: make(chan struct{})}
}

// Gone is why id may not connect (Refuse, HubConfig.Gone), or nil.
func (h *Hub[I]) Gone(id string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.gone(id)
}

// gone is Gone with h.mu held.
func (h *Hub[I]) gone(id string) error {
	if err, ok := h.refused[id]; ok {
		return err
	}
	if h.cfg.Gone != nil {
		return h.cfg.Gone(id)
	}
	return nil
}

func (h *Hub[I]) notify() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// Admit makes p, serving a stream whose context cancel ends, the
// connection of id. The connection it replaces, if any, is returned after
// being cancelled with ErrReplaced: registered first, cut second, so that
// calls cut by the replacement find the new stream when they re-send. An
// identity that may not connect (Refuse, Gone) gets its reason and nothing
// is registered; the gone check and the registration are one step, so a
// refusal that races the stream's hello cannot be missed.
func (h *Hub[I]) Admit(id string, p *Peer, info I, cancel context.CancelCauseFunc) (c, replaced *Conn[I], err error) {
	h.mu.Lock()
	if err := h.gone(id); err != nil {
		h.mu.Unlock()
		return nil, nil, err
	}
	c = &Conn[I]{ID: id, Peer: p, Info: info, Since: time.Now(), cancel: cancel}
	replaced = h.conns[id]
	h.conns[id] = c
	h.notify()
	h.mu.Unlock()
	if replaced != nil {
		replaced.cancel(ErrReplaced)
	}
	return c, replaced, nil
}

// Leave removes c unless a newer connection replaced it, and reports
// whether it did.
func (h *Hub[I]) Leave(c *Conn[I]) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conns[c.ID] != c {
		return false
	}
	delete(h.conns, c.ID)
	h.notify()
	return true
}

// Refuse stops admitting id for good and ends its stream, if any, with
// cause; it reports whether it ended one. Callers waiting for id fail at
// once.
func (h *Hub[I]) Refuse(id string, cause error) bool {
	h.mu.Lock()
	h.refused[id] = fmt.Errorf("%s: %w", id, ErrRefused)
	h.mu.Unlock()
	return h.Disconnect(id, cause)
}

// Disconnect ends id's stream, if any, with cause and reports whether it
// ended one. It also wakes the callers waiting for id, so they see a
// refusal made elsewhere (Gone) now rather than at their deadline.
func (h *Hub[I]) Disconnect(id string, cause error) bool {
	h.mu.Lock()
	c, ok := h.conns[id]
	if ok {
		delete(h.conns, id)
	}
	h.notify()
	h.mu.Unlock()
	if ok {
		c.cancel(cause)
	}
	return ok
}

// Close fails the calls waiting for a peer with ErrHubClosed. Streams are
// their servers' to end.
func (h *Hub[I]) Close() { h.once.Do(func() { close(h.closed) }) }

// Get returns id's current connection.
func (h *Hub[I]) Get(id string) (*Conn[I], bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.conns[id]
	return c, ok
}

// Count is the number of connected peers.
func (h *Hub[I]) Count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// Conns returns the current connections, in no particular order.
func (h *Hub[I]) Conns() []*Conn[I] {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*Conn[I], 0, len(h.conns))
	for _, c := range h.conns {
		out = append(out, c)
	}
	return out
}

// Await returns id's current connection once it is one other than stale
// (nil: any) and still serving, waiting for id to connect until ctx ends
// (ErrNotConnected), the hub closes (ErrHubClosed), or id is refused.
func (h *Hub[I]) Await(ctx context.Context, id string, stale *Conn[I]) (*Conn[I], error) {
	for {
		h.mu.Lock()
		if err := h.gone(id); err != nil {
			h.mu.Unlock()
			return nil, err
		}
		c := h.conns[id]
		changed := h.changed
		h.mu.Unlock()
		if c != nil && c != stale {
			select {
			case <-c.Peer.Done():
				// Ending; its Leave wakes us.
			default:
				return c, nil
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrNotConnected, ctx.Err())
		case <-h.closed:
			return nil, ErrHubClosed
		}
	}
}

// Call sends req to id, waiting for it to be connected, and re-sends it on
// id's next stream when the current one ends before the answer. That is
// only safe for requests the peer answers idempotently: commands carry a
// command id the drone runs at most once, metadata applies and renderer
// configurations are level-based. A failure the peer reports is returned
// as *Error along with the response.
func (h *Hub[I]) Call(ctx context.Context, id string, req *streamv1.Request) (*streamv1.Response, error) {
	if req.Id == "" {
		req.Id = NewID()
	}
	var last *Conn[I]
	for {
		c, err := h.Await(ctx, id, last)
		if err != nil {
			if last != nil && errors.Is(err, ErrNotConnected) {
				return nil, fmt.Errorf("the stream ended before the answer and did not come back: %w", err)
			}
			return nil, err
		}
		if last != nil {
			h.log.Info("re-sending a request on the peer's new stream", "peer", id, "request_id", req.Id)
		}
		resp, err := c.Peer.Call(ctx, req)
		var remote *Error
		if err != nil && !errors.As(err, &remote) && ctx.Err() == nil {
			// The stream ended, or broke while sending: wait for the next.
			h.log.Debug("stream ended during a request", "peer", id, "request_id", req.Id, "err", err)
			last = c
			continue
		}
		return resp, err
	}
}
