// Package daemon is what the example apps' tools (hangar-kv, hangar-web)
// share to run their server in the background: a pidfile written
// atomically and locked across start, stop, reload and restart; whether a
// pid is still that server, and not a zombie or a pid reused by another
// program; reaping the server and waiting for it to end.
//
// It needs a unix system (flock, signals, wait4); /proc, where there is
// one, sharpens the liveness check.
package daemon
