package enroll

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hangarhq/hangar/internal/pki"
)

// DroneKeysPrefix is where pilot keeps the public key of every drone's
// current certificate, at <prefix><cluster>/<node> (DER
// SubjectPublicKeyInfo). Secrets meant for one drone — its cluster's
// metadata key — are sealed to that key (internal/seal), so the frontgate
// relaying them cannot open them. Pilot learns the key the only way it can
// trust: by certifying it, at join and at every renewal.
const DroneKeysPrefix = "/hangar/drone-keys/"

// ErrNoDroneKey is returned by DroneKey for a drone pilot has not
// certified (it has not joined yet, or its record expired with its last
// certificate).
var ErrNoDroneKey = errors.New("no certified key recorded for this drone")

func droneKeyKey(id pki.Identity) string {
	return DroneKeysPrefix + id.Cluster + "/" + id.ID
}

// recordDroneKey keeps pub as the key of drone id. It runs before the
// certificate is handed out, so pilot never seals to a key older than the
// drone's certificate; for a moment it may seal to one newer than the
// certificate the drone has saved, which the drone refuses as unopenable
// and the sender retries. The record lives as long as the certificate (plus
// an hour): a drone that stops renewing stops being sealed to.
func (t *Tokens) recordDroneKey(ctx context.Context, id pki.Identity, pub crypto.PublicKey, notAfter time.Time) error {
	if id.Kind != pki.KindDrone {
		return nil
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return fmt.Errorf("record key of %s: %w", id, err)
	}
	ttl := int64(time.Until(notAfter)/time.Second) + 3600
	lease, err := t.c.Grant(ctx, ttl)
	if err != nil {
		return fmt.Errorf("record key of %s: lease: %w", id, err)
	}
	if _, err := t.c.Put(ctx, droneKeyKey(id), string(der), clientv3.WithLease(lease.ID)); err != nil {
		return fmt.Errorf("record key of %s: %w", id, err)
	}
	return nil
}

// DroneKey returns the public key of drone id's current certificate, to
// seal secrets to it. It wraps ErrNoDroneKey when none is recorded.
func (t *Tokens) DroneKey(ctx context.Context, id pki.Identity) (crypto.PublicKey, error) {
	if id.Kind != pki.KindDrone || id.Cluster == "" || id.ID == "" {
		return nil, fmt.Errorf("drone key: %s is not a drone identity", id)
	}
	resp, err := t.c.Get(ctx, droneKeyKey(id))
	if err != nil {
		return nil, fmt.Errorf("drone key of %s: %w", id, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("drone key of %s: %w", id, ErrNoDroneKey)
	}
	pub, err := x509.ParsePKIXPublicKey(resp.Kvs[0].Value)
	if err != nil {
		return nil, fmt.Errorf("drone key of %s: record is corrupt: %w", id, err)
	}
	return pub, nil
}
