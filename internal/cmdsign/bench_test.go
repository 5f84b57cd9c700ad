package cmdsign

import (
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
)

// BenchmarkSignVerifyRenderer signs and verifies a renderer configuration
// of 20 files (1 MiB in all) beside its floor, measured in the same run:
// Ed25519 signing and verifying the same number of bytes. The ratio is
// what the canonical encoding adds.
func BenchmarkSignVerifyRenderer(b *testing.B) {
	_, priv, _ := ed25519.GenerateKey(nil)
	pub := priv.Public().(ed25519.PublicKey)
	now := time.Now()
	cr := &streamv1.ConfigureRenderer{NodeId: "cln-bench", ClusterId: "cl-bench", Files: map[string][]byte{}, SealedMetadataKey: make([]byte, 113), ExpiresAt: timestamppb.New(now.Add(RendererLifetime))}
	for i := range 20 {
		cr.Files[fmt.Sprintf("templates/f%02d.tmpl", i)] = make([]byte, 50<<10)
	}
	msg, err := CanonicalRenderer(cr)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(msg)))
	var floorTime, opTime time.Duration
	for b.Loop() {
		t0 := time.Now()
		sig := ed25519.Sign(priv, msg)
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("floor does not verify")
		}
		t1 := time.Now()
		if err := SignRenderer(priv, cr); err != nil {
			b.Fatal(err)
		}
		if err := VerifyRenderer(pub, cr, "cln-bench", "cl-bench", now); err != nil {
			b.Fatal(err)
		}
		opTime += time.Since(t1)
		floorTime += t1.Sub(t0)
	}
	b.ReportMetric(float64(opTime)/float64(floorTime), "ratio")
}
