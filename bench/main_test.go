package bench

import (
	"testing"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
)

// The proxy benchmarks need a real PostgreSQL; the guard benchmarks run beside them unchanged.
func TestMain(m *testing.M) { pgtest.Main(m) }
