package compat

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lib/pq"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
)

// Helpers of the clients that run in this process (GORM, lib/pq).

// failed stops the test when a step of an in-process client's scenario fails.
func failed(t *testing.T, step string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if code := sqlState(err); code != "" {
		t.Fatalf("step %s failed: SQLSTATE %s: %v", step, code, err)
	}
	t.Fatalf("step %s failed: %v", step, err)
}

// sqlState is the SQLSTATE of a server error from pgx or lib/pq, or "".
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		return string(pqErr.Code)
	}
	return ""
}

// moduleVersion is the version of a module go.mod requires (a test binary carries no module
// versions of its own).
func moduleVersion(path string) string {
	data, err := os.ReadFile(filepath.Join(pgtest.RepoRoot(), "go.mod"))
	if err != nil {
		return "(version unknown)"
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		if len(fields) >= 2 && fields[0] == path {
			return fields[1]
		}
	}
	return "(version unknown)"
}
