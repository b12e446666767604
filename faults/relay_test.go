package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// relay is a fault-injecting TCP relay between the proxy and PostgreSQL: Shopify's toxiproxy,
// run in-process. The proxy's backend host and port point at it; toxics added to it act on
// every connection through it, open or new.
type relay struct {
	proxy *toxiproxy.Proxy
	host  string
	port  int
}

// Toxics act on one direction: upstream is the proxy's traffic to the server, downstream the
// server's answers.
const (
	upstream   = "upstream"
	downstream = "downstream"
)

// newRelay starts a relay on listenHost (a loopback address) to the package's cluster.
func newRelay(t testing.TB, listenHost string) *relay {
	t.Helper()
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(server, "postgres", net.JoinHostPort(listenHost, "0"), net.JoinHostPort("127.0.0.1", strconv.Itoa(pg.port)))
	if err := p.Start(); err != nil {
		t.Fatalf("starting the fault relay: %v", err)
	}
	host, port, _ := net.SplitHostPort(p.Listen)
	r := &relay{proxy: p, host: host}
	r.port, _ = strconv.Atoi(port)
	t.Cleanup(r.stop)
	return r
}

// add puts a toxic on every connection in one direction; attributes are the toxic's own (see
// toxiproxy's README: latency, bandwidth, timeout, reset_peer, limit_data, slicer).
func (r *relay) add(t testing.TB, name, kind, stream string, attributes map[string]any) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"name": name, "type": kind, "stream": stream, "toxicity": 1.0, "attributes": attributes})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.proxy.Toxics.AddToxicJson(bytes.NewReader(body)); err != nil {
		t.Fatalf("adding toxic %s: %v", name, err)
	}
}

// remove takes a toxic away.
func (r *relay) remove(t testing.TB, name string) {
	t.Helper()
	if err := r.proxy.Toxics.RemoveToxic(context.Background(), name); err != nil {
		t.Fatalf("removing toxic %s: %v", name, err)
	}
}

// clear takes every toxic away.
func (r *relay) clear() { r.proxy.Toxics.ResetToxics(context.Background()) }

// cut closes every connection through the relay at once, as a failover or a reset network
// does, and accepts new ones again.
func (r *relay) cut(t testing.TB) {
	t.Helper()
	r.proxy.Stop()
	if err := r.proxy.Start(); err != nil {
		t.Fatalf("restarting the fault relay on %s: %v", r.proxy.Listen, err)
	}
}

// stop closes the relay and every connection through it.
func (r *relay) stop() { r.proxy.Stop() }

func (r *relay) String() string { return fmt.Sprintf("relay %s:%d", r.host, r.port) }
