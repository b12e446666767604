// Command tenantproxy is a PostgreSQL proxy that makes one shared database safe for many tenants.
//
//	tenantproxy serve   --config FILE                 run the proxy
//	tenantproxy migrate up|status --database-url URL  create or inspect the schema
//	tenantproxy check   --database-url URL            lint the database for tenant isolation
//	tenantproxy passwd  USER                          print a SCRAM verifier for the config
//	tenantproxy user    add|set|remove|passwd|disable|enable|list  manage the tenant directory
//	tenantproxy version                               print the build
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/tenantproxy/tenantproxy/internal/version"
)

// exitError carries a process exit code without another message.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

var commands = map[string]func(args []string) error{
	"serve":   runServe,
	"migrate": runMigrate,
	"check":   runCheck,
	"passwd":  runPasswd,
	"user":    runUser,
	"version": func([]string) error { fmt.Println(version.String()); return nil },
}

func main() {
	switch {
	case len(os.Args) < 2:
		usage(os.Stderr)
		os.Exit(2)
	case os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help":
		usage(os.Stdout)
		return
	case os.Args[1] == "--version":
		os.Args[1] = "version"
	}
	run, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "tenantproxy: unknown command %q\n\n", os.Args[1])
		usage(os.Stderr)
		os.Exit(2)
	}
	if err := run(os.Args[2:]); err != nil {
		var code exitError
		switch {
		case errors.As(err, &code):
			os.Exit(int(code))
		case errors.Is(err, flag.ErrHelp):
			os.Exit(2)
		default:
			fmt.Fprintf(os.Stderr, "tenantproxy %s: %v\n", os.Args[1], err)
			os.Exit(1)
		}
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `tenantproxy: a PostgreSQL proxy that makes one shared database safe for many tenants

Usage:
  tenantproxy serve   --config FILE [--insecure-skip-check]
                      SIGHUP reloads the file; SIGTERM or SIGINT drains and stops
  tenantproxy migrate up     --database-url URL [--schema NAME] [--app-password PASSWORD] [--directory-password PASSWORD]
  tenantproxy migrate status --database-url URL [--schema NAME]
  tenantproxy check   --database-url URL [--schema NAME] [--role NAME]
  tenantproxy passwd  USER
  tenantproxy user    add NAME (--tenant T | --tenants A,B [--default A]) [--max-connections N] [--database-url URL]
  tenantproxy user    set NAME [--tenant T | --tenants A,B [--default A]] [--max-connections N] [--database-url URL]
  tenantproxy user    remove|passwd|disable|enable NAME [--database-url URL]
  tenantproxy user    list [--database-url URL]
  tenantproxy version
  tenantproxy help

Run "tenantproxy COMMAND -h" for the flags of one command.
`)
}
