// Package faults breaks what surrounds the proxy, on purpose, and checks that it fails cleanly
// and recovers by itself: the database (through a fault-injecting relay, and by the server's
// own means: restarts, terminated sessions, full connection slots, lock timeouts), its clients
// (disconnects at every stage, clients that stop reading, half-written messages), and both under
// sustained load. The tests use only the proxy's exported API, and run one at a time: each
// counts goroutines and open files before and after, which other tests running at the same time
// would disturb.
//
// The package owns a private PostgreSQL cluster (scripts/pgenv), started with TLS on so that
// the backend TLS tests can use it; tests restart it.
package faults

import (
	"fmt"
	"os"
	"testing"

	"github.com/rs/zerolog"
)

func TestMain(m *testing.M) {
	// The relay logs its toxics' doings at trace and debug level through zerolog's global
	// logger; the proxy's own log (info and above) is collected per test.
	zerolog.SetGlobalLevel(zerolog.InfoLevel)
	c, err := startCluster()
	if err != nil {
		fmt.Fprintf(os.Stderr, "faults: %v\n", err)
		os.Exit(1)
	}
	pg = c
	code := m.Run()
	c.stop()
	os.Exit(code)
}
