package main

import (
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// maxRecvMsgSize lets job snapshots carrying many nodes' command output
// through; gRPC's 4 MiB default is too small for large clusters.
const maxRecvMsgSize = 64 << 20

// dialPilot opens a client connection to pilot at addr. It is the only place
// that chooses the transport, so TLS can be added here alone.
// extra options tune the connection for one use, never its security.
func dialPilot(addr string, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	if addr == "" {
		return nil, fmt.Errorf("--pilot is empty: give pilot's gRPC address as HOST:PORT, e.g. %s (or set %s)", defaultPilotAddr, envPilotAddr)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("--pilot %q: want HOST:PORT, e.g. %s: %w", addr, defaultPilotAddr, err)
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize)),
	}, extra...)
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to pilot at %s: %w", addr, err)
	}
	return conn, nil
}
