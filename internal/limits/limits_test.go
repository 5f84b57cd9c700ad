package limits_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/limits"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestLimitsNest checks the limits that must fit inside others, so raising
// one alone fails here rather than in production.
func TestLimitsNest(t *testing.T) {
	const envelopeSlack = 1 << 20 // proto framing, ids, other fields
	tests := []struct {
		name        string
		inner, outr int
	}{
		{"archive in a gRPC request", limits.MaxArchiveBytes + envelopeSlack, limits.MaxGRPCRecvBytes},
		{"metadata tree in a stream envelope", limits.MaxMetadataBytes + envelopeSlack, limits.MaxGRPCRecvBytes},
		{"confd files in a stream envelope", limits.MaxConfdBytes + envelopeSlack, limits.MaxGRPCRecvBytes},
		// A transaction costs about 30 bytes per operation on top of key and
		// value; a tree of 1-byte keys and values is the worst case.
		{"metadata tree in one etcd request", limits.MaxMetadataBytes * 2, limits.FrontgateEtcdMaxRequestBytes},
		{"one package file within all files", limits.MaxPackageFileBytes, limits.MaxPackageBytes},
		{"confd files within all files", limits.MaxConfdBytes, limits.MaxPackageBytes},
		{"one conf.d file within the confd files", limits.MaxConfdResourceBytes, limits.MaxConfdBytes},
		{"a template value within the rendered spec", limits.MaxTemplateValueBytes, limits.MaxClusterSpecBytes},
		{"requests within responses", limits.MaxGRPCRecvBytes, limits.MaxGRPCSendBytes},
		{"a REST body, decoded, in a gRPC request", limits.MaxRESTBodyBytes, limits.MaxGRPCRecvBytes},
		{"the default node limit within what an admin may set", limits.DefaultMaxClusterNodes, limits.MaxClusterNodesCeiling},
		// PushApp writes the archive with the App record, which holds
		// config.json (a package file).
		{"a pushed app in one pilot etcd request", limits.MaxArchiveBytes + limits.MaxPackageFileBytes + envelopeSlack, limits.PilotEtcdMaxRequestBytes},
		// An accepted change writes the cluster (about 200 bytes a node),
		// its job (under 64 KiB) and the rendered spec.
		{"an accepted change in one pilot etcd request", limits.MaxClusterSpecBytes + limits.MaxClusterNodesCeiling*256 + 64<<10 + envelopeSlack, limits.PilotEtcdMaxRequestBytes},
	}
	for _, tt := range tests {
		if tt.inner > tt.outr {
			t.Errorf("%s: %d > %d", tt.name, tt.inner, tt.outr)
		}
	}
}

// The REST body limit admits the largest request the API takes: a PushApp
// with an archive of MaxArchiveBytes, in the JSON the gateway decodes
// (bytes as base64), with a little room; and little more.
func TestRESTBodyFitsTheLargestPush(t *testing.T) {
	body, err := protojson.MarshalOptions{Multiline: true}.Marshal(&pilotv1.PushAppRequest{Archive: make([]byte, limits.MaxArchiveBytes)})
	if err != nil {
		t.Fatal(err)
	}
	if len(body) > limits.MaxRESTBodyBytes {
		t.Fatalf("a PushApp of the largest archive is %d bytes of JSON, over MaxRESTBodyBytes %d", len(body), limits.MaxRESTBodyBytes)
	}
	if slack := limits.MaxRESTBodyBytes - len(body); slack > 2<<20 {
		t.Errorf("MaxRESTBodyBytes leaves %d bytes beyond the largest push: more than a caller can need", slack)
	}
}

// echo serves DroneLink.Connect, sending back every envelope it receives.
type echo struct {
	streamv1.UnimplementedDroneLinkServer
}

func (echo) Connect(st grpc.BidiStreamingServer[streamv1.Envelope, streamv1.Envelope]) error {
	for {
		env, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := st.Send(env); err != nil {
			return err
		}
	}
}

func serve(t *testing.T, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(opts...)
	streamv1.RegisterDroneLinkServer(gs, echo{})
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(lis) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return lis.Addr().String()
}

// roundTrip sends one hello of size bytes and reads the echo.
func roundTrip(t *testing.T, addr string, size int, opts ...grpc.DialOption) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := streamv1.NewDroneLinkClient(conn).Connect(ctx)
	if err != nil {
		return err
	}
	if err := st.Send(&streamv1.Envelope{Kind: &streamv1.Envelope_Hello{Hello: &streamv1.Hello{Id: strings.Repeat("x", size)}}}); err != nil {
		return err
	}
	got, err := st.Recv()
	if err != nil {
		return err
	}
	if n := len(got.GetHello().GetId()); n != size {
		t.Fatalf("echo carried %d bytes, want %d", n, size)
	}
	return nil
}

func TestGRPCOptionsBoundMessages(t *testing.T) {
	addr := serve(t, limits.GRPCServerOptions()...)
	dial := limits.GRPCDialOptions()

	// Larger than gRPC's 4 MiB default, so this fails if the options are
	// not applied on either side.
	if err := roundTrip(t, addr, limits.MaxGRPCRecvBytes-(1<<10), dial...); err != nil {
		t.Fatalf("message just under the limit: %v", err)
	}
	// The client refuses to send what the server would refuse.
	err := roundTrip(t, addr, limits.MaxGRPCRecvBytes+1, dial...)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("client sending over the limit: got %v, want ResourceExhausted", err)
	}
	// A client without the limits (a stranger) is refused by the server.
	big := grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20), grpc.MaxCallRecvMsgSize(64<<20))
	err = roundTrip(t, addr, limits.MaxGRPCRecvBytes+1, big)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("server receiving over the limit: got %v, want ResourceExhausted", err)
	}
}
