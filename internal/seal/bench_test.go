package seal

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"testing"
	"time"

	"github.com/hangarhq/hangar/internal/pki"
)

// BenchmarkSealOpen measures sealing and opening a 32-byte metadata key
// beside its floor, measured in the same run: the P-256 key agreements
// HPKE cannot avoid (an ephemeral key and one ECDH to seal, one ECDH to
// open). The ratio reports what HPKE's key schedule and AEAD add.
func BenchmarkSealOpen(b *testing.B) {
	drone, err := pki.NewKey()
	if err != nil {
		b.Fatal(err)
	}
	info := MetadataKeyInfo("cl-bench", "cln-bench")
	key := make([]byte, 32)
	droneECDH, err := drone.ECDH()
	if err != nil {
		b.Fatal(err)
	}
	pub := drone.Public().(*ecdsa.PublicKey)
	floor := func() {
		eph, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := eph.ECDH(droneECDH.PublicKey()); err != nil {
			b.Fatal(err)
		}
		if _, err := droneECDH.ECDH(eph.PublicKey()); err != nil {
			b.Fatal(err)
		}
	}
	op := func() {
		box, err := To(pub, info, key)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Open(drone, info, box); err != nil {
			b.Fatal(err)
		}
	}
	var floorTime, opTime time.Duration
	for b.Loop() {
		t0 := time.Now()
		floor()
		t1 := time.Now()
		op()
		opTime += time.Since(t1)
		floorTime += t1.Sub(t0)
	}
	b.ReportMetric(float64(opTime.Nanoseconds())/float64(b.N), "seal+open-ns/op")
	b.ReportMetric(float64(floorTime.Nanoseconds())/float64(b.N), "floor-ns/op")
	b.ReportMetric(float64(opTime)/float64(floorTime), "ratio")
}
