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
	var password, directoryPassword *string
	if sub == "up" {
		password = fs.String("app-password", os.Getenv("TENANTPROXY_APP_PASSWORD"),
			"password for the "+migrations.AppRole+" role (default $TENANTPROXY_APP_PASSWORD)")
		directoryPassword = fs.String("directory-password", os.Getenv("TENANTPROXY_DIRECTORY_PASSWORD"),
			"password for the "+migrations.DirectoryRole+" role, which reads the tenant directory (default $TENANTPROXY_DIRECTORY_PASSWORD)")
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
	if err := setRolePassword(ctx, conn, migrations.AppRole, *password, migrations.SetAppPassword,
		"--app-password or TENANTPROXY_APP_PASSWORD"); err != nil {
		return err
	}
	return setRolePassword(ctx, conn, migrations.DirectoryRole, *directoryPassword, migrations.SetDirectoryPassword,
		"--directory-password or TENANTPROXY_DIRECTORY_PASSWORD")
}

// setRolePassword sets a role's password when one is given, and says what it did.
func setRolePassword(ctx context.Context, conn *pgx.Conn, role, password string,
	set func(context.Context, *pgx.Conn, string) error, how string) error {
	if password == "" {
		fmt.Printf("role %s: password unchanged (none given: give %s;\n"+
			"  without one the role can only log in by trust, peer or certificate authentication)\n", role, how)
		return nil
	}
	if err := set(ctx, conn, password); err != nil {
		return err
	}
	fmt.Printf("role %s: password set\n", role)
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
