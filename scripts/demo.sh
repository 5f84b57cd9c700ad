#!/usr/bin/env bash
# Brings up pilot with the zero-setup local runtime and deploys the example
# kv app (a primary and two replicas), then says how to reach it.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
hangar() { "$BIN/hangar" "$@"; }

hangar up
hangar app push examples/kv
# Progress goes to stderr; the final cluster, as JSON, to stdout.
id=$(hangar cluster create kv --param cluster.replica.count=2 --wait -o json | grep -o '"cl-[0-9a-f]*"' | head -n 1 | tr -d '"')
echo
hangar cluster show "$id"
primary=$(hangar cluster show "$id" | awk '$1 == "kv" && $2 == "primary" { print $3 ":" $4; exit }')
replica=$(hangar cluster show "$id" | awk '$1 == "kv" && $2 == "replica" { print $3 ":" $4; exit }')
cat <<MSG

The kv cluster $id is running on this machine. Reach it:

  curl -X PUT --data world http://$primary/kv/hello    # write on the primary
  curl http://${replica:-$primary}/kv/hello                 # read, replicated
  curl http://$primary/status                          # role, motd, keys

Change it, watch it, remove it:

  bin/hangar cluster update-env $id motd='hi from hangar' --wait   # every node re-renders and reloads
  bin/hangar job list --cluster $id
  bin/hangar cluster delete $id --wait                               # leaves nothing behind
  bin/hangar down                                                      # stops pilot
MSG
