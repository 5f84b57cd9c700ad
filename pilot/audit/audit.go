// Package audit keeps pilot's audit log: one entry per mutating API call
// (who, tenant, method, the object acted on, result code, message, time),
// stored in pilot's etcd at /hangar/audit/<tenant>/<id> where ids sort by
// time, so a tenant's newest entries are one ranged read.
//
// Entries never hold request or response bodies: those carry passwords and
// provider credentials. The target is only the request's id or name field
// (or the created object's, for a create).
package audit

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
	"unicode/utf8"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/sortid"
	"github.com/hangarhq/hangar/pilot/auth"
)

// Prefix holds every tenant's entries.
const Prefix = "/hangar/audit/"

// Limits of ListAudit.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// maxMessage bounds the stored error message: enough to say what went
// wrong, not a copy of a large input.
const maxMessage = 512

// writeTimeout bounds recording one entry after the call it describes.
const writeTimeout = 5 * time.Second

// Config configures the log.
type Config struct {
	// Client is pilot's etcd; the caller keeps ownership.
	Client *clientv3.Client
	Logger *slog.Logger
	// Retention bounds how much of the log Prune and RunRetention keep;
	// the zero value keeps everything.
	Retention Retention
}

// Log is the audit log.
type Log struct {
	c   *clientv3.Client
	log *slog.Logger

	// kv is what retention reads and deletes through: c, or in tests a
	// wrapper that watches the size of each delete.
	kv        clientv3.KV
	retention Retention
	// batch bounds the keys one retention request reads or deletes.
	batch int
	// pruned and failedRuns feed pilot's metrics.
	pruned, failedRuns atomic.Uint64
}

// New returns the audit log over cfg.Client.
func New(cfg Config) *Log {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Log{c: cfg.Client, log: log, kv: cfg.Client, retention: cfg.Retention, batch: pruneBatch}
}

// TenantPrefix holds one tenant's entries.
func TenantPrefix(tenant string) string { return Prefix + tenant + "/" }

var marshal = protojson.MarshalOptions{UseProtoNames: true}

// Log stores e under its tenant, filling its id and time.
func (l *Log) Log(ctx context.Context, e *pilotv1.AuditEntry) error {
	if e.Tenant == "" {
		return fmt.Errorf("audit entry for %s: tenant is required", e.Method)
	}
	if err := auth.ValidateName("tenant", e.Tenant); err != nil {
		return fmt.Errorf("audit entry for %s: %w", e.Method, err)
	}
	now := time.Now()
	if e.Time == nil {
		e.Time = timestamppb.New(now)
	}
	e.Id = sortid.New(e.Time.AsTime())
	b, err := marshal.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode audit entry: %w", err)
	}
	if _, err := l.c.Put(ctx, TenantPrefix(e.Tenant)+e.Id, string(b)); err != nil {
		return fmt.Errorf("store audit entry for %s: %w", e.Method, err)
	}
	return nil
}

// List returns the tenant's newest entries first, at most limit (0 means
// DefaultLimit; above MaxLimit is cut to MaxLimit).
func (l *Log) List(ctx context.Context, tenant string, limit int) ([]*pilotv1.AuditEntry, error) {
	if limit < 0 {
		return nil, fmt.Errorf("limit %d: must be 0 (default %d) or positive", limit, DefaultLimit)
	}
	if limit == 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	if auth.ValidateName("tenant", tenant) != nil {
		return nil, nil
	}
	resp, err := l.c.Get(ctx, TenantPrefix(tenant), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("read the audit log of tenant %s: %w", tenant, err)
	}
	out := make([]*pilotv1.AuditEntry, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		e := &pilotv1.AuditEntry{}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(kv.Value, e); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// Record logs one finished (or refused) call of the Principal in ctx. A
// call without one is not recorded: the interceptors refused it before
// anyone was identified, and pilot's log has it. A failure to store is
// logged, never returned: the call has already happened.
func (l *Log) Record(ctx context.Context, method string, req, resp any, callErr error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return
	}
	st := status.Convert(callErr)
	e := &pilotv1.AuditEntry{
		User:    p.User,
		Tenant:  p.Tenant,
		Method:  method,
		Target:  Target(req, resp),
		Result:  codeName(st),
		Message: truncate(st.Message(), maxMessage),
	}
	if callErr == nil {
		e.Message = ""
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	if err := l.Log(wctx, e); err != nil {
		l.log.Error("audit entry not stored", "method", method, "user", p.User, "tenant", p.Tenant, "result", e.Result, "err", err)
	}
}

// UnaryInterceptor records every call of a method methods mark Mutates,
// after it completes. Chain it after auth's interceptor, which puts the
// caller in the context.
func (l *Log) UnaryInterceptor(methods map[string]auth.Rule) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if methods[info.FullMethod].Mutates {
			l.Record(ctx, info.FullMethod, req, resp, err)
		}
		return resp, err
	}
}

// codeName is the gRPC code as the API documents it: "OK",
// "InvalidArgument", "NotFound"...
func codeName(st *status.Status) string {
	return st.Code().String()
}

// Target names the object a call acted on: the request's kind/id, id or
// name field; else, for a create, the id or name of what the response
// holds. Never a body.
func Target(req, resp any) string {
	if t := targetOf(req, false); t != "" {
		return t
	}
	return targetOf(resp, true)
}

func targetOf(v any, nested bool) string {
	m, ok := v.(proto.Message)
	if !ok || m == nil {
		return ""
	}
	r := m.ProtoReflect()
	if !r.IsValid() {
		return ""
	}
	id, name := str(r, "id"), str(r, "name")
	switch {
	case id != "" && str(r, "kind") != "" && r.Descriptor().FullName() == "hangar.pilot.v1.RevokeRequest":
		return str(r, "kind") + "/" + id
	case id != "":
		return id
	case name != "":
		if v := str(r, "version"); v != "" {
			return name + "@" + v
		}
		return name
	}
	if !nested {
		return ""
	}
	// A create answers with a wrapper: ClusterJob{cluster}, CreateUserResponse{user}.
	fields := r.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if f.Kind() != protoreflect.MessageKind || f.IsList() || f.IsMap() || !r.Has(f) {
			continue
		}
		if t := targetOf(r.Get(f).Message().Interface(), false); t != "" {
			return t
		}
	}
	return ""
}

func str(r protoreflect.Message, name protoreflect.Name) string {
	f := r.Descriptor().Fields().ByName(name)
	if f == nil || f.Kind() != protoreflect.StringKind || f.IsList() || f.IsMap() {
		return ""
	}
	return truncate(r.Get(f).String(), 200)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
