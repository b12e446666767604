package faults

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tenantproxy/tenantproxy/config"
)

// soakDuration is how long each pool mode's run lasts: SOAK_DURATION (make soak sets it), or
// 20 s in a plain go test.
func soakDuration(t *testing.T) time.Duration {
	raw := os.Getenv("SOAK_DURATION")
	if raw == "" {
		return 20 * time.Second
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d <= 0 {
		t.Fatalf("SOAK_DURATION=%q: want a duration such as 10m", raw)
	}
	return d
}

// loadClients is the crowd: 200 clients over the 50 tenants t00..t49, four each.
var loadClients = func() []string {
	var users []string
	for i := range 200 {
		users = append(users, manyTenants[i%len(manyTenants)])
	}
	return users
}()

// Sustained load with faults firing at random: 200 clients of 50 tenants, reads, writes and
// transactions on both protocols, while the relay and the server break in every way the other
// tests try one at a time. No client may see another tenant's rows or context, every error must
// be clear, every acknowledged write must be there at the end, and the proxy must let go of
// everything once the clients leave.
func TestLoadWithFaults(t *testing.T) {
	duration := soakDuration(t)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			f := newFixture(t, mode, func(c *config.Config) {
				c.Pool.Size = 20
				if mode == "session" {
					// 200 clients take turns: each reconnects after a few operations. More
					// sessions would be more to reopen at once after each fault than two cores
					// open within connect_timeout.
					c.Pool.Size = 40
				}
				c.Pool.CheckoutTimeout = config.Duration{Duration: 10 * time.Second}
				c.Backend.ConnectTimeout = config.Duration{Duration: 5 * time.Second}
			})
			w := startLoad(f, loadClients)
			w.waitEach(t, 1, time.Time{})

			begin := time.Now()
			rng := rand.New(rand.NewPCG(uint64(begin.UnixNano()), 7))
			recoveries := map[string][]time.Duration{}
			var lastEnd time.Time
			for kinds := []string(nil); time.Since(begin) < duration; {
				if len(kinds) == 0 {
					// Every kind fires once before any fires again.
					kinds = slices.Clone(loadFaults)
					rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
				}
				kind := kinds[0]
				kinds = kinds[1:]
				time.Sleep(time.Duration(1000+rng.IntN(2000)) * time.Millisecond)
				lastEnd = f.inject(t, kind)
				waitFor(t, 20*time.Second, "a client to succeed after "+kind, func() error {
					if _, ok := w.firstSuccessAfter(lastEnd); !ok {
						return fmt.Errorf("none yet")
					}
					return nil
				})
				if first, ok := w.firstSuccessAfter(lastEnd); ok {
					recoveries[kind] = append(recoveries[kind], first.Sub(lastEnd))
				}
			}
			w.waitEach(t, 1, lastEnd)
			everyone := w.lastFirstSuccess(lastEnd).Sub(lastEnd)
			w.stop()
			f.relay.clear()
			w.verify(t, time.Time{}, false)

			var lines []string
			for _, kind := range loadFaults {
				var ds []string
				for _, d := range recoveries[kind] {
					ds = append(ds, d.Round(time.Millisecond).String())
				}
				lines = append(lines, fmt.Sprintf("    %-15s x%d, first success after: %s", kind, len(recoveries[kind]), strings.Join(ds, ", ")))
			}
			t.Logf("load summary (%s mode): %v, %d clients over %d tenants, %d operations, %d acknowledged writes, all present unless reported\n"+
				"  errors by SQLSTATE: %v\n  faults:\n%s\n  every client succeeding again after the last fault: %v",
				mode, duration, len(loadClients), len(manyTenants), w.ops.Load(), len(w.acked),
				w.errorCounts(), strings.Join(lines, "\n"), everyone.Round(time.Millisecond))
			for _, kind := range loadFaults {
				for _, d := range recoveries[kind] {
					t.Logf("RECOVERY %s: %s under load: first success %v after the fault", t.Name(), kind, d.Round(time.Millisecond))
				}
			}
			f.checkIsolation(t, "t00", "t01", "t02", "alice")
			f.waitQuiet(t, "at the end")
		})
	}
}

// loadFaults are the faults the load test fires.
var loadFaults = []string{"latency", "bandwidth", "reset", "stall", "terminate-some", "terminate-idle", "restart"}

// inject fires one fault and returns when it is over.
func (f *fixture) inject(t *testing.T, kind string) time.Time {
	t.Helper()
	switch kind {
	case "latency":
		f.relay.add(t, kind, "latency", downstream, map[string]any{"latency": 100, "jitter": 50})
		time.Sleep(time.Second)
		f.relay.remove(t, kind)
	case "bandwidth":
		f.relay.add(t, kind, "bandwidth", downstream, map[string]any{"rate": 64})
		time.Sleep(time.Second)
		f.relay.remove(t, kind)
	case "reset":
		f.relay.cut(t)
	case "stall":
		// Nothing gets through for a second; then the stalled connections are reset.
		f.relay.add(t, "stall-up", "timeout", upstream, map[string]any{"timeout": 0})
		f.relay.add(t, "stall-down", "timeout", downstream, map[string]any{"timeout": 0})
		time.Sleep(time.Second)
		f.relay.clear()
		f.relay.cut(t)
	case "terminate-some":
		f.db.terminateAppSessions(t, "pid IN (SELECT pid "+appSessions+" ORDER BY random() LIMIT 3)")
	case "terminate-idle":
		f.db.terminateAppSessions(t, "state = 'idle'")
	case "restart":
		if err := pg.restart(); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown fault %q", kind)
	}
	return time.Now()
}
