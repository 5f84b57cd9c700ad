#!/usr/bin/env bash
# Regenerates api/ from proto/. Needs protoc (Debian: protobuf-compiler) and the
# Go plugins installed by `make tools`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$(go env GOPATH)/bin:$PATH"
inc=(-I proto -I proto/third_party -I /usr/include)
# Only generated files are removed: api/ packages may hold hand-written
# helpers beside them (e.g. api/pilotv1/role.go).
find api/pilotv1 api/streamv1 api/providerv1 -name '*.pb.go' -o -name '*.pb.gw.go' 2>/dev/null | xargs -r rm -f
rm -rf api/openapi
mkdir -p api/openapi
protoc "${inc[@]}" \
  --go_out=. --go_opt=module=github.com/hangarhq/hangar \
  --go-grpc_out=. --go-grpc_opt=module=github.com/hangarhq/hangar \
  proto/stream/v1/stream.proto proto/provider/v1/provider.proto proto/pilot/v1/pilot.proto
protoc "${inc[@]}" \
  --grpc-gateway_out=. --grpc-gateway_opt=module=github.com/hangarhq/hangar \
  --openapiv2_out=api/openapi --openapiv2_opt=allow_merge=true,merge_file_name=pilot \
  proto/pilot/v1/pilot.proto
