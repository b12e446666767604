package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/lint"
	"github.com/tenantproxy/tenantproxy/migrations"
)

// runCheck lints a database for tenant isolation: one line per finding, exit status 1 on any.
func runCheck(args []string) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	url := fs.String("database-url", os.Getenv("DATABASE_URL"), "connection URL (default $DATABASE_URL); its user is the role checked unless --role is given")
	role := fs.String("role", "", "role the proxy's backend sessions use (default: the URL's user)")
	schemas := fs.String("schema", migrations.DefaultSchema, "protected schemas, comma-separated")
	setting := fs.String("setting", migrations.DefaultSetting, "the tenant context's setting")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" {
		return fmt.Errorf("no database: give --database-url or set DATABASE_URL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, *url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	findings, err := lint.Check(ctx, conn, lint.Options{
		Role:             *role,
		Schemas:          strings.Split(*schemas, ","),
		Setting:          *setting,
		ReservedPrefixes: []string{strings.SplitN(*setting, ".", 2)[0] + "."},
	})
	if err != nil {
		return err
	}
	for _, f := range findings {
		fmt.Println(f)
	}
	if len(findings) > 0 {
		fmt.Fprintf(os.Stderr, "%d finding(s): tenant isolation is not assured\n", len(findings))
		return exitError(1)
	}
	fmt.Println("ok: no findings")
	return nil
}

// checkBeforeServing runs the same check as the backend role the proxy will use. Findings stop
// the proxy (err), unless insecure, which logs them loudly and goes on: unsure then says why
// isolation is not assured, for /readyz.
func checkBeforeServing(cfg *config.Config, log zerolog.Logger, insecure bool) (unsure, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Backend.ConnectTimeout.Duration+30*time.Second)
	defer cancel()
	cc, err := cfg.Backend.ConnConfig()
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		if insecure {
			log.Warn().Err(err).Msg("INSECURE: could not check the database; serving anyway (--insecure-skip-check)")
			return fmt.Errorf("the database was not checked for tenant isolation (--insecure-skip-check): %w", err), nil
		}
		return nil, fmt.Errorf("checking the database before serving: %w", err)
	}
	defer conn.Close(ctx)
	findings, err := lint.Check(ctx, conn, lint.Options{
		Schemas:          cfg.Tenancy.Schemas,
		Setting:          cfg.Tenancy.Setting,
		ReservedPrefixes: cfg.Tenancy.ReservedPrefixes,
	})
	if err != nil {
		return nil, fmt.Errorf("checking the database before serving: %w", err)
	}
	if len(findings) == 0 {
		log.Info().Msg("database check passed")
		return nil, nil
	}
	for _, f := range findings {
		ev := log.Error()
		if insecure {
			ev = log.Warn()
		}
		ev.Str("rule", f.Rule).Str("object", f.Object).Msg(f.Message)
	}
	if insecure {
		log.Warn().Int("findings", len(findings)).Msg("INSECURE: serving although tenant isolation is not assured (--insecure-skip-check)")
		return fmt.Errorf("the isolation check found %d problem(s) (serving anyway: --insecure-skip-check)", len(findings)), nil
	}
	return nil, fmt.Errorf("%d finding(s): refusing to serve (run tenantproxy check; --insecure-skip-check overrides)", len(findings))
}
