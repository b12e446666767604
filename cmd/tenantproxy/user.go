package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/directory"
	"github.com/tenantproxy/tenantproxy/internal/scramsecret"
)

const userUsage = `usage:
  tenantproxy user add NAME (--tenant T | --tenants A,B [--default A]) [--max-connections N] [--database-url URL]
  tenantproxy user set NAME [--tenant T | --tenants A,B [--default A]] [--max-connections N] [--database-url URL]
  tenantproxy user remove  NAME [--database-url URL]
  tenantproxy user passwd  NAME [--database-url URL]
  tenantproxy user disable NAME [--database-url URL]
  tenantproxy user enable  NAME [--database-url URL]
  tenantproxy user list         [--database-url URL]

Manages the users of the tenant directory. URL is a superuser's (default $DATABASE_URL).
set changes what it is given: the tenants (all of them, with the default), or the connection
cap (0 removes it). add and passwd read the password from the terminal (twice, without echo), or as one line from
standard input; only its SCRAM-SHA-256 verifier is stored. Every running proxy sees a change
within its directory refresh interval.
`

// runUser manages the users of the tenant directory.
func runUser(args []string) error {
	return userCommand(context.Background(), args, os.Stdin, os.Stdout)
}

// userCommand is runUser with its input and output given, so tests can drive it.
func userCommand(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, userUsage)
		return exitError(2)
	}
	sub := args[0]
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), userUsage) }
	url := fs.String("database-url", os.Getenv("DATABASE_URL"), "superuser connection URL (default $DATABASE_URL)")
	var tenant, tenants, defaultTenant *string
	var maxConnections *int
	wantNames := 1
	switch sub {
	case "add", "set":
		tenant = fs.String("tenant", "", "the user's only tenant")
		tenants = fs.String("tenants", "", "the tenants the user may choose from, comma-separated")
		defaultTenant = fs.String("default", "", "with --tenants: the tenant used when the client picks none")
		maxConnections = fs.Int("max-connections", 0, "the most client connections the user may hold (0: no limit of its own)")
	case "remove", "passwd", "disable", "enable":
	case "list":
		wantNames = 0
	default:
		fmt.Fprintf(os.Stderr, "tenantproxy user: unknown subcommand %q\n\n%s", sub, userUsage)
		return exitError(2)
	}
	names, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	if len(names) != wantNames {
		if wantNames == 0 {
			return fmt.Errorf("takes no user name, got %q", names)
		}
		return fmt.Errorf("give one user name, got %d", len(names))
	}
	if *url == "" {
		return fmt.Errorf("no database: give --database-url or set DATABASE_URL")
	}

	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	setTenants := given["tenant"] || given["tenants"] || given["default"]
	if sub == "set" && !setTenants && !given["max-connections"] {
		return errors.New("nothing to change: give --tenant, --tenants (with --default) or --max-connections")
	}
	var user directory.User
	if sub == "add" || setTenants {
		user, err = userFromFlags(names[0], *tenant, *tenants, *defaultTenant, *maxConnections)
		if err != nil {
			return err
		}
	}

	connectCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	conn, err := pgx.Connect(connectCtx, *url)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())

	// The password comes last, so a name taken or unknown costs no typing.
	var verifier string
	if sub == "add" || sub == "passwd" {
		_, exists, err := directory.Get(ctx, conn, names[0])
		switch {
		case err != nil:
			return err
		case sub == "add" && exists:
			return fmt.Errorf("user %q: %w", names[0], directory.ErrExists)
		case sub == "passwd" && !exists:
			return fmt.Errorf("user %q: %w", names[0], directory.ErrNoUser)
		}
		if verifier, err = newVerifier(stdin); err != nil {
			return err
		}
	}
	ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	switch sub {
	case "add":
		user.Verifier = verifier
		if err := directory.Add(ctx, conn, user); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "user %s added (%s)\n", user.Name, describeTenants(user))
	case "set":
		if setTenants {
			if err := directory.SetTenants(ctx, conn, user.Name, user.Tenant, user.Tenants, user.DefaultTenant); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "user %s: %s\n", user.Name, describeTenants(user))
		}
		if given["max-connections"] {
			if err := directory.SetMaxConnections(ctx, conn, names[0], *maxConnections); err != nil {
				return err
			}
			limit := "no connection limit of its own"
			if *maxConnections > 0 {
				limit = fmt.Sprintf("at most %d connections", *maxConnections)
			}
			fmt.Fprintf(stdout, "user %s: %s\n", names[0], limit)
		}
	case "remove":
		if err := directory.Remove(ctx, conn, names[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "user %s removed\n", names[0])
	case "passwd":
		if err := directory.SetVerifier(ctx, conn, names[0], verifier); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "user %s: password changed\n", names[0])
	case "disable", "enable":
		if err := directory.SetDisabled(ctx, conn, names[0], sub == "disable"); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "user %s %sd\n", names[0], sub)
	case "list":
		list, err := directory.List(ctx, conn)
		if err != nil {
			return err
		}
		printUsers(stdout, list)
	}
	return nil
}

// parseInterspersed parses flags placed before or after the names (user add dave --tenant acme)
// and returns the names.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var names []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return names, nil
		}
		names = append(names, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func userFromFlags(name, tenant, tenants, defaultTenant string, maxConnections int) (directory.User, error) {
	u := directory.User{Name: name, Tenant: tenant, DefaultTenant: defaultTenant, MaxConnections: maxConnections}
	switch {
	case tenant == "" && tenants == "":
		return u, errors.New("give the user's tenant (--tenant T) or the tenants it may choose from (--tenants A,B)")
	case tenant != "" && tenants != "":
		return u, errors.New("give --tenant or --tenants, not both")
	case defaultTenant != "" && tenants == "":
		return u, errors.New("--default goes with --tenants: a user with --tenant always has that one")
	case maxConnections < 0:
		return u, errors.New("--max-connections: give at least 1, or 0 for no limit of the user's own")
	}
	for t := range strings.SplitSeq(tenants, ",") {
		if t = strings.TrimSpace(t); t != "" {
			u.Tenants = append(u.Tenants, t)
		}
	}
	// Checked before the password is asked for, so a typo in a tenant costs no typing.
	return u, u.Validate()
}

func newVerifier(stdin io.Reader) (string, error) {
	password, err := readPassword(stdin)
	if err != nil {
		return "", err
	}
	if password == "" {
		return "", errors.New("empty password")
	}
	return scramsecret.New(password)
}

func describeTenants(u directory.User) string {
	if u.Tenant != "" {
		return "tenant " + u.Tenant
	}
	s := "tenants " + strings.Join(u.Tenants, ", ")
	if u.DefaultTenant != "" {
		s += "; default " + u.DefaultTenant
	}
	return s
}

func printUsers(w io.Writer, users []directory.User) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTENANTS\tDEFAULT\tMAX CONNECTIONS\tSTATUS")
	for _, u := range users {
		tenants, def, limit, status := u.Tenant, "-", "-", "enabled"
		if u.Tenant == "" {
			tenants = strings.Join(u.Tenants, ",")
			def = "(client picks)"
			if u.DefaultTenant != "" {
				def = u.DefaultTenant
			}
		}
		if u.MaxConnections > 0 {
			limit = strconv.Itoa(u.MaxConnections)
		}
		if u.Disabled {
			status = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Name, tenants, def, limit, status)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d user(s)\n", len(users))
}
