package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/tenantproxy/tenantproxy/internal/scramsecret"
)

// runPasswd prints a SCRAM-SHA-256 verifier for a user of the config. The password is read
// from the terminal without echo (twice), or as one line from standard input.
func runPasswd(args []string) error {
	fs := flag.NewFlagSet("passwd", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: tenantproxy passwd USER   (reads the password from the terminal or standard input)")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitError(2)
	}
	user := fs.Arg(0)
	password, err := readPassword(os.Stdin)
	if err != nil {
		return err
	}
	if password == "" {
		return fmt.Errorf("empty password")
	}
	verifier, err := scramsecret.New(password)
	if err != nil {
		return err
	}
	fmt.Printf("[users.%s]\npassword = %q\n", user, verifier)
	return nil
}

// readPassword reads a password from the terminal without echo, twice, or when in is not a
// terminal, as its first line.
func readPassword(in io.Reader) (string, error) {
	file, isFile := in.(*os.File)
	if !isFile || !term.IsTerminal(int(file.Fd())) {
		line, err := bufio.NewReader(in).ReadString('\n')
		if err != nil && line == "" {
			return "", fmt.Errorf("reading the password from standard input: %w", err)
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	fd := int(file.Fd())
	fmt.Fprint(os.Stderr, "Password: ")
	first, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return "", err
	}
	fmt.Fprint(os.Stderr, "Again: ")
	second, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return "", err
	}
	if string(first) != string(second) {
		return "", fmt.Errorf("the passwords differ")
	}
	return string(first), nil
}
