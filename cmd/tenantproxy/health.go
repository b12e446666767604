package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tenantproxy/tenantproxy/proxy"
)

// monitoring serves the metrics listener: /metrics (Prometheus), /healthz (the process answers)
// and /readyz (it can serve new clients: the isolation check passed, it is not shutting down,
// and the database takes sessions). A load balancer should route by /readyz.
func monitoring(srv *proxy.Server, checkFailed error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(srv.Metrics().Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		err := checkFailed
		if err == nil {
			ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
			err = srv.Ready(ctx)
			cancel()
		}
		if err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}
