// Package api holds Hangar's generated protocol code: pilotv1 (the public API
// and the importable client SDK), streamv1 (the pilot⇄frontgate⇄drone
// envelope protocol), providerv1 (the provider plugin protocol) and the
// OpenAPI spec of the REST gateway. Regenerate with `make proto`.
package api
