// Package apppkg loads, validates and renders app packages in the QingCloud
// AppCenter format (and its OpenPitrix variant): package.json, config.json,
// cluster.json.mustache or cluster.json.tmpl, confd/ and locale/.
//
// The flow pilot follows is:
//
//	pkg, err := apppkg.LoadArchive(r)     // or LoadDir; checks every file
//	vals, err := pkg.Resolve(params)      // user parameters -> typed values
//	spec, err := pkg.Render(vals)         // cluster.json -> ClusterSpec
//
// Every field of a package is either executed by Hangar, rejected with an
// error naming it, or accepted with a warning: QingCloud platform hints (which
// have no meaning outside QingCloud) and documented fields Hangar parses but
// does not act on yet. Warnings found while loading are in Package.Warnings;
// those of one rendering are in ClusterSpec.Warnings. Nothing is dropped
// silently.
//
// Values reach cluster.json.mustache as JSON literals: strings quoted and
// escaped, numbers bare, booleans true/false, loadbalancer values as arrays.
// A tag that names no config.json parameter fails the rendering, as does a
// section or partial tag: real packages only use plain {{path}} tags, and
// guessing what anything else means could deploy the wrong thing.
package apppkg
