// Package examples holds Hangar's example app packages, one folder each in
// the AppCenter format (kv: the zero-setup demo built on cmd/hangar-kv;
// redis: Redis with replicas). The Go code here only tests them: their
// JSON files parse, cluster.json.mustache renders to a valid cluster spec
// from config.json's defaults, the confd templates render with confd's own
// engine, and the kv package runs end to end on the local runtime's layout.
package examples
