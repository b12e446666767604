package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/migrations"
)

func runMigrate(args []string) error {
	if len(args) == 0 || (args[0] != "up" && args[0] != "status") {
		return fmt.Errorf("want a subcommand: up or status")
	}
	sub := args[0]
	fs := flag.NewFlagSet("migrate "+sub, flag.ContinueOnError)
	url := fs.String("database-url", os.Getenv("DATABASE_URL"), "superuser connection URL (default $DATABASE_URL)")
	schema := fs.String("schema", migrations.DefaultSchema, "schema that holds the tenant tables")
	var password *string
	if sub == "up" {
		password = fs.String("app-password", os.Getenv("TENANTPROXY_APP_PASSWORD"),
			"password for the "+migrations.AppRole+" role (default $TENANTPROXY_APP_PASSWORD)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *url == "" {
		return fmt.Errorf("no database: give --database-url or set DATABASE_URL")
	}

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, *url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	opts := migrations.Options{Schema: *schema}

	if sub == "status" {
		st, err := migrations.CurrentStatus(ctx, conn, opts)
		if err != nil {
			return err
		}
		printStatus(st)
		if len(st.Pending) > 0 {
			return exitError(3)
		}
		return nil
	}

	before, err := migrations.CurrentStatus(ctx, conn, opts)
	if err != nil {
		return err
	}
	st, err := migrations.Up(ctx, conn, opts)
	if err != nil {
		return err
	}
	if st.Current == before.Current {
		fmt.Printf("schema %s is up to date at version %d\n", st.Schema, st.Current)
	} else {
		fmt.Printf("schema %s migrated from version %d to %d\n", st.Schema, before.Current, st.Current)
	}
	if *password != "" {
		if err := migrations.SetAppPassword(ctx, conn, *password); err != nil {
			return err
		}
		fmt.Printf("role %s: password set\n", migrations.AppRole)
	} else {
		fmt.Printf("role %s: password unchanged (none given: give --app-password or TENANTPROXY_APP_PASSWORD;\n"+
			"  without one the role can only log in by trust, peer or certificate authentication)\n", migrations.AppRole)
	}
	return nil
}

func printStatus(st migrations.Status) {
	fmt.Printf("schema:  %s\nversion: %d of %d\n", st.Schema, st.Current, st.Latest)
	if len(st.Pending) == 0 {
		fmt.Println("pending: none")
		return
	}
	fmt.Printf("pending: %s\n", strings.Join(st.Pending, ", "))
}
