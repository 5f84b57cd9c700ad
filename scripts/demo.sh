#!/usr/bin/env bash
# Brings up pilot with the zero-setup local runtime and deploys the example
# kv app (a primary and two replicas), then says how to reach it.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
hangar() { "$BIN/hangar" "$@"; }

hangar up
hangar app push examples/kv
out=$(hangar cluster create kv --param cluster.replica.count=2 --wait -o json | tee /dev/stderr | tail -n 1)
id=$(printf '%s' "$out" | sed -n 's/.*"id": *"\(cl-[0-9a-f]*\)".*/\1/p' | head -n 1)
echo
echo "The kv cluster is running. Try it:"
hangar cluster show "$id"
primary=$(hangar cluster show "$id" -o json | tr -d '\n ' | sed -n 's/.*"role":"primary","instance_id":"[^"]*","address":"\([0-9.]*\)".*/\1/p')
if [ -n "$primary" ]; then
  cat <<MSG

  curl -X PUT --data 'world' http://$primary:6380/kv/hello   # write on the primary
  curl http://$primary:6380/status                           # role, motd, keys
  hangar cluster update-env $id motd='changed at runtime' --wait
  hangar cluster delete $id --wait                           # removes everything
  hangar down                                                # stops pilot
MSG
fi
