package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// pgbouncerVersion is the PgBouncer the proxies are compared with. It tracks protocol-level
// prepared statements in transaction mode (since 1.21), as tenantproxy does; Debian 12's 1.18
// does not, so pgbench -M prepared fails through it. Debian 13 packages this version.
const pgbouncerVersion = "1.24.1"

// pgbouncerBuildDeps are what building it needs, from this system's own (Debian 12) packages.
var pgbouncerBuildDeps = []string{"gcc", "make", "pkg-config", "dpkg-dev", "libevent-dev", "libssl-dev", "libc-ares-dev"}

// pgbouncerPrefix is where it is installed: a cache outside the repository, kept between runs.
func pgbouncerPrefix() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache folder for the PgBouncer build: %w", err)
	}
	return filepath.Join(cache, "tenantproxy-bench", "pgbouncer-"+pgbouncerVersion), nil
}

// ensurePgbouncer returns the PgBouncer binary, building it once from Debian 13's source
// package when the cache does not hold it (as scripts/pgenv builds pgvector: a deb-src entry
// for trixie from the mirror this machine's apt sources use, never a binary package).
func ensurePgbouncer(ctx context.Context, repo string) (string, error) {
	prefix, err := pgbouncerPrefix()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(prefix, "bin", "pgbouncer")
	if pgbouncerIsWanted(ctx, bin) {
		return bin, nil
	}
	howTo := fmt.Sprintf("PgBouncer %s is not built in %s: run the bench once as root on Debian (it builds it from Debian 13's source package), "+
		"or build PgBouncer %s from its release tarball with ./configure --prefix=%s && make && make install", pgbouncerVersion, prefix, pgbouncerVersion, prefix)
	if !isRoot() {
		return "", fmt.Errorf("%s", howTo)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return "", fmt.Errorf("%s", howTo)
	}
	logf("building PgBouncer %s from Debian 13's source package into %s (once)", pgbouncerVersion, prefix)
	aptEnv := cleanEnv("DEBIAN_FRONTEND=noninteractive")
	if _, err := command(ctx, repo, aptEnv, filepath.Join(repo, "scripts", "pgenv"), "trixie-src"); err != nil {
		return "", err
	}
	if _, err := command(ctx, "/", aptEnv, "apt-get", append([]string{"install", "-y", "-qq"}, pgbouncerBuildDeps...)...); err != nil {
		return "", err
	}
	scratch, err := os.MkdirTemp("", "tenantproxy-pgbouncer-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(scratch)
	if _, err := command(ctx, scratch, aptEnv, "apt-get", "source", "-qq", "pgbouncer"); err != nil {
		return "", err
	}
	src := filepath.Join(scratch, "pgbouncer-"+pgbouncerVersion)
	if _, err := os.Stat(filepath.Join(src, "configure")); err != nil {
		found, _ := filepath.Glob(filepath.Join(scratch, "pgbouncer-*"))
		return "", fmt.Errorf("apt-get source pgbouncer did not unpack PgBouncer %s (found %v): %s", pgbouncerVersion, found, howTo)
	}
	steps := [][]string{
		{"./configure", "--prefix=" + prefix},
		{"make", "-j" + strconv.Itoa(runtime.NumCPU())},
		{"make", "install"},
	}
	for _, argv := range steps {
		if _, err := command(ctx, src, cleanEnv(), argv[0], argv[1:]...); err != nil {
			return "", fmt.Errorf("building PgBouncer: %w", err)
		}
	}
	if !pgbouncerIsWanted(ctx, bin) {
		return "", fmt.Errorf("the build did not install PgBouncer %s at %s", pgbouncerVersion, bin)
	}
	return bin, nil
}

func pgbouncerIsWanted(ctx context.Context, bin string) bool {
	out, err := command(ctx, "/", cleanEnv(), bin, "--version")
	return err == nil && strings.HasPrefix(out, "PgBouncer "+pgbouncerVersion+"\n")
}
