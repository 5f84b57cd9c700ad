// Package userdata defines what pilot hands a new instance at boot, through
// the provider's user data: enough for the agent in it (a frontgate or a
// drone) to find and join its peers. Providers pass the bytes through
// untouched; only pilot writes them and only the agents read them.
package userdata

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// Ports every frontgate listens on, at its instance's own address.
const (
	FrontgateDronePort = 9611 // DroneLink gRPC
	FrontgateEtcdPort  = 2379 // etcd clients (drones)
	FrontgatePeerPort  = 2380 // etcd peers
)

// Frontgate is the user data of a frontgate instance.
type Frontgate struct {
	// FrontgateID names this frontgate to pilot (one per network).
	FrontgateID string `json:"frontgate_id"`
	// PilotAddress is host:port of pilot's gRPC endpoint.
	PilotAddress string `json:"pilot_address"`
	// JoinToken is exchanged once, at first boot, for the frontgate's
	// certificate (pilot's EnrollmentService.Join).
	JoinToken string `json:"join_token"`
	// CAPEM is pilot's CA certificate: the frontgate trusts pilot's server
	// certificate through it before it has a certificate of its own.
	CAPEM string `json:"ca_pem"`
}

// Drone is the user data of an app instance.
type Drone struct {
	ClusterID string `json:"cluster_id"`
	// NodeID is the node's stable id (cln-...); the drone's identity.
	NodeID string `json:"node_id"`
	// FrontgateID is the frontgate of the instance's network. The drone
	// trusts a server as its frontgate (DroneLink, etcd, the join) only
	// when its certificate names this frontgate: a certificate pilot
	// issued to another frontgate — a revoked one, or one that held the
	// same address before — is refused.
	FrontgateID string `json:"frontgate_id"`
	// FrontgateAddress is host:port of the frontgate's DroneLink.
	FrontgateAddress string `json:"frontgate_address"`
	// EtcdEndpoints are the frontgate's etcd client URLs.
	EtcdEndpoints []string `json:"etcd_endpoints"`
	// JoinToken is exchanged once, at first boot, for the drone's
	// certificate (DroneLink.Join, relayed to pilot).
	JoinToken string `json:"join_token"`
	// CAPEM is pilot's CA certificate, trusted for the frontgate's server
	// certificate.
	CAPEM string `json:"ca_pem"`
}

// Validate reports the first missing field.
func (f Frontgate) Validate() error {
	switch {
	case f.FrontgateID == "":
		return errors.New("user data: frontgate_id is required")
	case f.PilotAddress == "":
		return errors.New("user data: pilot_address is required")
	case f.CAPEM == "":
		return errors.New("user data: ca_pem is required")
	}
	return nil
}

// Validate reports the first missing field.
func (d Drone) Validate() error {
	switch {
	case d.ClusterID == "":
		return errors.New("user data: cluster_id is required")
	case d.NodeID == "":
		return errors.New("user data: node_id is required")
	case d.FrontgateID == "":
		return errors.New("user data: frontgate_id is required")
	case d.FrontgateAddress == "":
		return errors.New("user data: frontgate_address is required")
	case len(d.EtcdEndpoints) == 0:
		return errors.New("user data: etcd_endpoints is required")
	case d.CAPEM == "":
		return errors.New("user data: ca_pem is required")
	}
	return nil
}

// Encode returns v as user data bytes.
func Encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only the plain structs of this package are encoded.
		panic(fmt.Sprintf("userdata: encode %T: %v", v, err))
	}
	return b
}

// ReadFrontgate reads and validates a frontgate's user data file.
func ReadFrontgate(path string) (Frontgate, error) {
	var f Frontgate
	if err := readJSON(path, &f); err != nil {
		return f, err
	}
	return f, f.Validate()
}

// ReadDrone reads and validates a drone's user data file.
func ReadDrone(path string) (Drone, error) {
	var d Drone
	if err := readJSON(path, &d); err != nil {
		return d, err
	}
	return d, d.Validate()
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read user data: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse user data %s: %w", path, err)
	}
	return nil
}
