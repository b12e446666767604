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
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/version"
	"github.com/tenantproxy/tenantproxy/proxy"
)

func runServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := fs.String("config", "tenantproxy.toml", "configuration file")
	insecure := fs.Bool("insecure-skip-check", false, "serve even if the database fails the isolation check (logs a warning; /readyz fails)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log)
	proxy.SetThreads(cfg.Threads)

	unsure, err := checkBeforeServing(cfg, log, *insecure)
	if err != nil {
		return err
	}

	srv, err := proxy.New(cfg, log)
	if err != nil {
		return err
	}
	ln, err := listen(cfg.Listen, cfg.ReusePort)
	if err != nil {
		srv.Close()
		return fmt.Errorf("listen on %s: %w (set listen in the config, or TENANTPROXY_LISTEN)", cfg.Listen, err)
	}
	if cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			srv.Close()
			return fmt.Errorf("listen on %s for metrics: %w (set metrics_listen in the config, or TENANTPROXY_METRICS_LISTEN)", cfg.MetricsListen, err)
		}
		hs := &http.Server{Handler: monitoring(srv, unsure), ReadHeaderTimeout: 5 * time.Second}
		go hs.Serve(mln)
		defer hs.Close()
		log.Info().Str("metrics_listen", mln.Addr().String()).Msg("serving /metrics, /healthz and /readyz")
	}
	log.Info().Str("listen", ln.Addr().String()).Str("pool_mode", cfg.Pool.Mode).Str("version", version.String()).
		Str("backend", fmt.Sprintf("%s:%d/%s", cfg.Backend.Host, cfg.Backend.Port, cfg.Backend.Database)).
		Msg("tenantproxy serving")

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	for {
		select {
		case err := <-served:
			return err
		case <-srv.ShutdownAsked():
			return drain(srv, served, "the admin console's SHUTDOWN", log)
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				srv.ReloadFile()
				continue
			}
			return drain(srv, served, sig.String(), log)
		}
	}
}

// drain shuts the server down gracefully, as net/http's Shutdown does: new clients are refused,
// idle ones are told (57P01), transactions in flight may finish until shutdown_timeout (as the
// configuration says now). It fails (the process exits 1) when clients were still connected at
// the deadline.
func drain(srv *proxy.Server, served <-chan error, why string, log zerolog.Logger) error {
	timeout := srv.Config().ShutdownTimeout.Duration
	log.Info().Str("cause", why).Dur("timeout", timeout).Msg("shutting down: letting transactions in flight finish")
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

// newLogger logs at every level zerolog's global level lets through: a reload changes that
// level (proxy.Server.Reload).
func newLogger(c config.Log) zerolog.Logger {
	level, _ := zerolog.ParseLevel(c.Level)
	zerolog.SetGlobalLevel(level)
	var log zerolog.Logger
	if c.Format == "console" {
		log = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.DateTime})
	} else {
		log = zerolog.New(os.Stderr)
	}
	return log.With().Timestamp().Logger()
}
