// Package limits holds the size and work limits that bound what one peer can
// make a Hangar process hold in memory, write to disk or compute: every
// value that crosses a trust boundary (an API call, a stream message, an app
// package, a metadata tree, a rendered file) is checked against one of these
// before it is kept. The values sit in one place so that limits that must
// nest (a package must fit in a gRPC message, a metadata tree in an etcd
// request) can be checked against each other by this package's tests.
package limits

import (
	"runtime"

	"google.golang.org/grpc"
)

// gRPC.
const (
	// MaxGRPCRecvBytes is the largest message a Hangar gRPC server accepts
	// and a Hangar client sends. It is what a peer can make a server
	// buffer per message before any check runs. The largest legitimate
	// requests are PushApp (an archive of at most MaxArchiveBytes) and the
	// stream envelopes carrying a metadata tree (MaxMetadataBytes) or a
	// package's confd files (MaxConfdBytes); 16 MiB fits each with room for
	// framing and JSON-to-proto overhead, and is 4x gRPC's 4 MiB default,
	// which PushApp alone would exceed.
	MaxGRPCRecvBytes = 16 << 20

	// MaxGRPCSendBytes is the largest message a Hangar gRPC server sends and
	// a Hangar client receives. The largest answers are pages of node
	// results (100 of up to 64 KiB of output each,
	// drone/executor.MaxOutputBytes) and job views (a few MiB of output
	// shared among the job's nodes, pilot/jobs.ViewOutputBudget, plus each
	// node's result); 64 MiB leaves them room. Clients talk only to
	// authenticated servers, so the larger value costs no exposure to
	// strangers.
	MaxGRPCSendBytes = 64 << 20
)

// App packages (internal/apppkg).
const (
	// MaxArchiveBytes bounds an uploaded package archive (compressed). Real
	// packages are tens of KiB; 8 MiB leaves room for icons and docs and
	// still fits in one gRPC message (MaxGRPCRecvBytes).
	MaxArchiveBytes = 8 << 20
	// MaxPackageFiles bounds the files in one package, so a package of
	// empty files cannot make pilot keep millions of map entries.
	MaxPackageFiles = 1000
	// MaxPackageFileBytes bounds one file of a package, uncompressed: gzip
	// expands up to 1000x, so the compressed limit alone bounds nothing.
	MaxPackageFileBytes = 4 << 20
	// MaxPackageBytes bounds all files of a package, uncompressed.
	MaxPackageBytes = 32 << 20
	// MaxConfdBytes bounds the confd files a package ships (conf.d and
	// templates together): they travel to every drone in one
	// ConfigureRenderer message, which must fit MaxGRPCRecvBytes with the
	// rest of the envelope.
	MaxConfdBytes = 4 << 20
	// MaxConfdResourceBytes bounds one conf.d/*.toml. A resource is a
	// handful of short settings (a few hundred bytes); the bound keeps the
	// TOML parser's cost small (see MaxConfdResourceNesting).
	MaxConfdResourceBytes = 64 << 10
	// MaxConfdResourceNesting bounds the '{', '[' and '.' characters of
	// one conf.d/*.toml. The TOML parser (BurntSushi/toml) takes memory
	// quadratic in the depth of nested inline tables and dotted keys: 16
	// KiB of "{b=" took over 4 GiB. A real resource has a few; 1024 cost
	// at most about 50 MiB and 0.1 s, and still allow long commands and
	// paths with dots.
	MaxConfdResourceNesting = 1024
	// MaxClusterSpecBytes bounds the JSON a cluster template renders to.
	// A template may repeat a parameter in many tags (and a Go template may
	// loop), so the output can be far larger than its inputs; a real
	// cluster.json is a few KiB.
	MaxClusterSpecBytes = 4 << 20
	// MaxTemplateValueBytes bounds one string a function of a Go cluster
	// template (getv, print, printf, html, js, urlquery…) returns:
	// assigning a variable to itself doubled in a loop would otherwise grow
	// exponentially in memory without writing a byte of output.
	MaxTemplateValueBytes = 1 << 20
	// MaxTemplateWork bounds the work of one Go cluster template execution,
	// in units of one executed template node or one KiB of string built by
	// a function. A range over 10^12, a loop nested in loops, or templates
	// calling each other twice per level can take forever without output;
	// real templates use a few hundred units. A million units is well under
	// a second.
	MaxTemplateWork = 1_000_000
)

// Drones.
const (
	// MaxRenderedFileBytes bounds one config file the drone renders from a
	// confd template. Configs are KiB to a few hundred KiB even for
	// clusters of thousands of nodes; a template looping over its own
	// output size must fail rather than fill the instance's disk.
	MaxRenderedFileBytes = 8 << 20
)

// Metadata (frontgate).
const (
	// MaxMetadataBytes bounds one cluster's metadata tree in one Apply,
	// counting each key's full etcd path and its value. The tree is written
	// as one etcd transaction, so it must fit in one etcd request
	// (FrontgateEtcdMaxRequestBytes) with per-operation overhead; every
	// drone of the cluster also reads the whole tree. A node's entries take
	// about 1 KiB, so 4 MiB holds clusters of thousands of nodes.
	MaxMetadataBytes = 4 << 20
	// FrontgateEtcdMaxRequestBytes is the request limit the frontgate's
	// etcd member must be started with (etcd's default is 1.5 MiB): a
	// transaction writing a tree of MaxMetadataBytes plus operation
	// overhead must pass.
	FrontgateEtcdMaxRequestBytes = 8 << 20
	// FrontgateEtcdMaxTxnOps is the frontgate etcd member's limit of
	// operations in one transaction (etcd's default is 128): one cluster's
	// metadata change is one transaction, and a node adds about 17 keys,
	// so a cluster of MaxClusterNodesCeiling nodes needs about 70,000.
	// At 16,384 a 1,000-node cluster (17,008 keys) could be created but
	// never registered (issue 12); the request size bounds the work of one
	// transaction anyway.
	FrontgateEtcdMaxTxnOps = 1 << 17
)

// Pilot's etcd.
const (
	// PilotEtcdMaxRequestBytes is the request limit of pilot's embedded etcd
	// (etcd's default is 1.5 MiB), and what pilot's etcd client sends at
	// most. Pilot's largest writes are a pushed app (an archive of
	// MaxArchiveBytes and the App record holding config.json) and an
	// accepted change (the cluster record, at most MaxClusterNodesCeiling
	// nodes of about 200 bytes, with the job record and the spec rendered
	// from the package, at most MaxClusterSpecBytes). Node results (at most
	// 64 KiB of output each) and job records (kept under 64 KiB whatever
	// the cluster's size) are written apart. 16 MiB holds the largest with
	// room; an external etcd (pilot --etcd-endpoints) needs
	// --max-request-bytes as large for the largest pushes.
	PilotEtcdMaxRequestBytes = 16 << 20
)

// Clusters (pilot).
const (
	// DefaultMaxClusterNodes is the default of pilot --max-cluster-nodes,
	// the most nodes one cluster may have (all roles together, and so any
	// one role). Pilot refuses a bigger cluster before it builds a node
	// record: a count of a million once took 630 MB in five seconds. A
	// thousand nodes is what the other limits are sized for: one metadata
	// tree (MaxMetadataBytes) with room to spare.
	DefaultMaxClusterNodes = 1000
	// nodeMetadataBytes is about what one node adds to its cluster's
	// metadata tree (its host entry: ids, address, role, resources).
	nodeMetadataBytes = 1 << 10
	// MaxClusterNodesCeiling is the most a platform admin may set
	// --max-cluster-nodes to: the cluster's metadata tree is written in one
	// transaction of at most MaxMetadataBytes, so a bigger cluster could
	// be created but never registered.
	MaxClusterNodesCeiling = MaxMetadataBytes / nodeMetadataBytes
)

// REST gateway (pilot --http-listen).
const (
	// MaxRESTBodyBytes bounds a REST request body. The largest legitimate
	// one is PushApp: an archive of MaxArchiveBytes, which JSON carries
	// base64-encoded (4 bytes per 3), plus 1 MiB for the other fields and
	// whitespace. Every other request is a few KiB. The gateway decodes a
	// body into memory before the gRPC call it makes, so this is what an
	// authenticated caller can make pilot buffer per request (an
	// unauthenticated one, nothing: the token is checked first).
	MaxRESTBodyBytes = (MaxArchiveBytes+2)/3*4 + 1<<20
)

// GRPCServerOptions are the message size limits every Hangar gRPC server
// (pilot's API and FrontgateLink, frontgate's DroneLink) is created with.
func GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxGRPCRecvBytes),
		grpc.MaxSendMsgSize(MaxGRPCSendBytes),
	}
}

// FrontgateEtcdConcurrentReads is how many drones' reads of their trees a
// frontgate's etcd serves at once: two per core keeps every core busy
// while one read waits on the database, and bounds the memory the reads
// of a thousand drones starting together take (etcdserver.Config).
func FrontgateEtcdConcurrentReads() int { return 2 * runtime.GOMAXPROCS(0) }

// ManyPeersServerOptions are for a server that holds a connection per
// drone, thousands of them mostly idle (frontgate's DroneLink): each
// connection's read buffer is small, instead of 32 KiB held for the
// connection's life (issue 12: frontgate memory per drone). Write buffers
// are shared between connections already (gRPC's default).
func ManyPeersServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ReadBufferSize(4 << 10)}
}

// ManyPeersDialOptions are for the client end of those connections (the
// drone's stream and etcd watch to its frontgate): mostly idle, so a
// small read buffer; the sim provider runs thousands in one process.
func ManyPeersDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithReadBufferSize(4 << 10)}
}

// GRPCDialOptions are the matching limits for every Hangar gRPC client: it
// refuses to send what a server would refuse (failing with a clear error
// before the bytes travel) and accepts what a server may send.
func GRPCDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(MaxGRPCSendBytes),
			grpc.MaxCallSendMsgSize(MaxGRPCRecvBytes),
		),
	}
}
