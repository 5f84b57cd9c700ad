// Package examples holds Hangar's example app packages, one folder each in
// the AppCenter format (kv: the zero-setup demo built on cmd/hangar-kv;
// redis: Redis with replicas; mariadb: MariaDB with GTID replicas). The Go
// code here only tests them: their JSON files parse, cluster.json.mustache
// renders to a valid cluster spec from config.json's defaults, the confd
// templates render with confd's own engine, and the kv package runs end to
// end on the local runtime's layout. tests/e2e deploys redis and mariadb
// through pilot.
package examples
