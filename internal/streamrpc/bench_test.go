package streamrpc

import (
	"context"
	"testing"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
)

// BenchmarkCall measures one request/response over a real gRPC stream on
// loopback, the cost every relayed command and metadata apply pays per hop.
func BenchmarkCall(b *testing.B) {
	h := start(b, func(context.Context, *streamv1.Request) *streamv1.Response { return ack("ok") }, nil, Options{}, Options{}, true)
	ctx := context.Background()
	req := &streamv1.Request{Body: &streamv1.Request_ListDrones{ListDrones: &streamv1.ListDrones{ClusterId: "c1"}}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req.Id = ""
		if _, err := h.client.Call(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCallParallel measures many requests in flight on one stream, as
// when a step runs a command on many nodes at once.
func BenchmarkCallParallel(b *testing.B) {
	h := start(b, func(context.Context, *streamv1.Request) *streamv1.Response { return ack("ok") }, nil, Options{}, Options{}, true)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := h.client.Call(context.Background(), &streamv1.Request{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
