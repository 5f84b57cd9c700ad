package gateway

import (
	"context"
	"fmt"
	"strconv"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Proto3 strings must be UTF-8, and gRPC refuses to marshal a message
// holding one that is not, as an internal error. A REST request can carry
// any bytes (a percent-encoded path segment, a query parameter), so the
// gateway checks each request before gRPC marshals it and refuses the first
// invalid string by its field's name: the caller's mistake, answered 400.

// utf8Unary checks a unary call's request.
func utf8Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if err := checkUTF8(req); err != nil {
		return err
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// utf8Stream checks every message a streaming call sends.
func utf8Stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return utf8ClientStream{cs}, nil
}

type utf8ClientStream struct{ grpc.ClientStream }

func (s utf8ClientStream) SendMsg(m any) error {
	if err := checkUTF8(m); err != nil {
		return err
	}
	return s.ClientStream.SendMsg(m)
}

// checkUTF8 returns InvalidArgument naming the first string field of m
// that is not valid UTF-8.
func checkUTF8(m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil
	}
	if path := invalidUTF8(pm.ProtoReflect()); path != "" {
		return status.Errorf(codes.InvalidArgument, "%s: not valid UTF-8; every string in a request must be UTF-8 text", path)
	}
	return nil
}

// invalidUTF8 returns the path of the first string in m that is not valid
// UTF-8, by proto field names (id, params["key"], nodes[2].address), or ""
// when there is none.
func invalidUTF8(m protoreflect.Message) string {
	var path string
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := string(fd.Name())
		switch {
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				key := k.String()
				if fd.MapKey().Kind() == protoreflect.StringKind && !utf8.ValidString(key) {
					path = name + " (a key)"
					return false
				}
				path = invalidValue(fd.MapValue(), mv, fmt.Sprintf("%s[%s]", name, strconv.Quote(key)))
				return path == ""
			})
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && path == ""; i++ {
				path = invalidValue(fd, l.Get(i), fmt.Sprintf("%s[%d]", name, i))
			}
		default:
			path = invalidValue(fd, v, name)
		}
		return path == ""
	})
	return path
}

// invalidValue checks one value of field fd, found at at.
func invalidValue(fd protoreflect.FieldDescriptor, v protoreflect.Value, at string) string {
	switch fd.Kind() {
	case protoreflect.StringKind:
		if !utf8.ValidString(v.String()) {
			return at
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		if p := invalidUTF8(v.Message()); p != "" {
			return at + "." + p
		}
	}
	return ""
}
