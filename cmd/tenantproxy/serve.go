package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/proxy"
)

func runServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := fs.String("config", "tenantproxy.toml", "configuration file")
	insecure := fs.Bool("insecure-skip-check", false, "serve even if the database fails the isolation check (logs a warning)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log)
	setThreads(cfg.Threads, log)

	if err := checkBeforeServing(cfg, log, *insecure); err != nil {
		return err
	}

	srv, err := proxy.New(cfg, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (set listen in the config, or TENANTPROXY_LISTEN)", cfg.Listen, err)
	}
	log.Info().Str("listen", ln.Addr().String()).Str("pool_mode", cfg.Pool.Mode).
		Str("backend", fmt.Sprintf("%s:%d/%s", cfg.Backend.Host, cfg.Backend.Port, cfg.Backend.Database)).
		Msg("tenantproxy serving")

	if cfg.MetricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(srv.Metrics().Registry, promhttp.HandlerOpts{}))
		hs := &http.Server{Addr: cfg.MetricsListen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := hs.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error().Err(err).Msg("metrics server")
			}
		}()
		defer hs.Close()
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case sig := <-stop:
		return drain(srv, served, sig, cfg.ShutdownTimeout.Duration, log)
	}
}

// drain shuts the server down gracefully, as net/http's Shutdown does: new clients are refused,
// idle ones are told (57P01), transactions in flight may finish until the deadline. It fails
// (the process exits 1) when clients were still connected at the deadline.
func drain(srv *proxy.Server, served <-chan error, sig os.Signal, timeout time.Duration, log zerolog.Logger) error {
	log.Info().Str("signal", sig.String()).Dur("timeout", timeout).Msg("shutting down: letting transactions in flight finish")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := srv.Shutdown(ctx)
	if serr := <-served; !errors.Is(serr, proxy.ErrServerClosed) {
		log.Error().Err(serr).Msg("serving")
	}
	if err != nil {
		log.Warn().Msg("shutdown deadline passed: the clients still connected were disconnected")
		return exitError(1)
	}
	log.Info().Msg("shut down: every client finished")
	return nil
}

// setThreads sets GOMAXPROCS when the configuration asks; otherwise Go's default (every CPU, or
// the GOMAXPROCS environment variable) stands.
func setThreads(threads int, log zerolog.Logger) {
	if threads > 0 {
		runtime.GOMAXPROCS(threads)
	}
	log.Debug().Int("threads", runtime.GOMAXPROCS(0)).Msg("threads")
}

func newLogger(c config.Log) zerolog.Logger {
	level, _ := zerolog.ParseLevel(c.Level)
	var log zerolog.Logger
	if c.Format == "console" {
		log = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.DateTime})
	} else {
		log = zerolog.New(os.Stderr)
	}
	return log.Level(level).With().Timestamp().Logger()
}
