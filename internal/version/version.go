// Package version says which build of tenantproxy is running, from the build information Go
// embeds in every binary: the module version, the commit it was built from, and the Go release.
package version

import (
	"runtime/debug"
	"strings"
)

// String is e.g. "tenantproxy v1.2.0 (commit 0123abcd4567, go1.26.0)", or "tenantproxy
// (devel) (commit 0123abcd4567+dirty, go1.26.0)" for a build of a working tree.
func String() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "tenantproxy (unknown build)"
	}
	version := info.Main.Version
	if version == "" {
		version = "(devel)"
	}
	var details []string
	var revision string
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value[:min(12, len(s.Value))]
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if revision != "" {
		if modified {
			revision += "+dirty"
		}
		details = append(details, "commit "+revision)
	}
	details = append(details, info.GoVersion)
	return "tenantproxy " + version + " (" + strings.Join(details, ", ") + ")"
}
