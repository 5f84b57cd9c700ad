// Command brokenprovider is the example provider with one rule broken on
// purpose: a retried RunInstance creates a second instance instead of
// answering the first. `hangar provider test` must fail it, naming the rule.
package main

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/providers/example"
	"github.com/hangarhq/hangar/providers/sdk"
)

type broken struct {
	*example.Provider
	n atomic.Int64
}

// RunInstance forgets the token: every call makes a new instance.
func (b *broken) RunInstance(ctx context.Context, req *providerv1.RunInstanceRequest) (*providerv1.Instance, error) {
	if req.GetIdempotencyToken() != "" {
		req.IdempotencyToken = fmt.Sprintf("%s#%d", req.GetIdempotencyToken(), b.n.Add(1))
	}
	return b.Provider.RunInstance(ctx, req)
}

func main() {
	sdk.Serve(&broken{Provider: example.New()}, sdk.HCLog(sdk.NewPluginLogger(os.Stderr, nil)))
}
