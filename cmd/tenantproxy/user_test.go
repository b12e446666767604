package main

import (
	"bytes"
	"context"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdg-go/scram"

	"github.com/tenantproxy/tenantproxy/directory"
	"github.com/tenantproxy/tenantproxy/internal/pgtest"
	"github.com/tenantproxy/tenantproxy/internal/scramsecret"
)

// user runs `tenantproxy user ARGS` in this process, with stdin as standard input.
func user(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := userCommand(context.Background(), args, strings.NewReader(stdin), &out)
	return out.String(), err
}

func mustUser(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := user(t, stdin, args...)
	if err != nil {
		t.Fatalf("user %v: %v", args, err)
	}
	return out
}

func listUsers(t *testing.T, db *pgtest.DB) map[string]directory.User {
	t.Helper()
	list, err := directory.List(context.Background(), pgtest.Connect(t, db.AdminURL))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]directory.User{}
	for _, u := range list {
		byName[u.Name] = u
	}
	return byName
}

// passwordMatches reports whether verifier was made from password.
func passwordMatches(t *testing.T, verifier, password string) bool {
	t.Helper()
	stored, err := scramsecret.Parse(verifier)
	if err != nil {
		t.Fatalf("stored verifier: %v", err)
	}
	client, err := scram.SHA256.NewClient("", password, "")
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(client.GetStoredCredentials(stored.KeyFactors).StoredKey, stored.StoredKey)
}

func TestUserCommands(t *testing.T) {
	db := pgtest.New(t)
	url := "--database-url=" + db.AdminURL

	if out := mustUser(t, "alice-pw\n", "add", "alice", "--tenant", "acme", url); out != "user alice added (tenant acme)\n" {
		t.Errorf("add alice: %q", out)
	}
	out := mustUser(t, "carol-pw\n", "add", "--tenants", "acme, globex", "--default", "globex", "carol", "--max-connections", "3", url)
	if out != "user carol added (tenants acme, globex; default globex)\n" {
		t.Errorf("add carol: %q", out)
	}
	users := listUsers(t, db)
	alice, carol := users["alice"], users["carol"]
	if alice.Tenant != "acme" || alice.Tenants != nil || alice.MaxConnections != 0 || !passwordMatches(t, alice.Verifier, "alice-pw") {
		t.Errorf("alice stored as %+v", alice)
	}
	if carol.Tenant != "" || strings.Join(carol.Tenants, ",") != "acme,globex" || carol.DefaultTenant != "globex" ||
		carol.MaxConnections != 3 || !passwordMatches(t, carol.Verifier, "carol-pw") {
		t.Errorf("carol stored as %+v", carol)
	}

	if out := mustUser(t, "alice-new\n", "passwd", "alice", url); out != "user alice: password changed\n" {
		t.Errorf("passwd: %q", out)
	}
	if v := listUsers(t, db)["alice"].Verifier; !passwordMatches(t, v, "alice-new") || passwordMatches(t, v, "alice-pw") {
		t.Error("alice's verifier is not the new password's")
	}

	if out := mustUser(t, "", "disable", "carol", url); out != "user carol disabled\n" {
		t.Errorf("disable: %q", out)
	}
	list := mustUser(t, "", "list", url)
	want := []string{
		"NAME   TENANTS      DEFAULT  MAX CONNECTIONS  STATUS",
		"alice  acme         -        -                enabled",
		"carol  acme,globex  globex   3                disabled",
		"2 user(s)",
	}
	if got := strings.Split(strings.TrimSpace(list), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("list:\n%s\nwant:\n%s", list, strings.Join(want, "\n"))
	}
	if out := mustUser(t, "", "enable", "carol", url); out != "user carol enabled\n" || listUsers(t, db)["carol"].Disabled {
		t.Errorf("enable: %q", out)
	}

	if out := mustUser(t, "", "set", "carol", "--tenant", "globex", url); out != "user carol: tenant globex\n" {
		t.Errorf("set tenant: %q", out)
	}
	if out := mustUser(t, "", "set", "carol", "--max-connections", "0", url); out != "user carol: no connection limit of its own\n" {
		t.Errorf("set max connections: %q", out)
	}
	if c := listUsers(t, db)["carol"]; c.Tenant != "globex" || c.Tenants != nil || c.DefaultTenant != "" || c.MaxConnections != 0 ||
		!passwordMatches(t, c.Verifier, "carol-pw") {
		t.Errorf("carol after set: %+v", c)
	}
	out = mustUser(t, "", "set", "carol", "--tenants", "globex,initech", "--max-connections", "7", url)
	if out != "user carol: tenants globex, initech\nuser carol: at most 7 connections\n" {
		t.Errorf("set both: %q", out)
	}
	if c := listUsers(t, db)["carol"]; c.Tenant != "" || strings.Join(c.Tenants, ",") != "globex,initech" || c.MaxConnections != 7 {
		t.Errorf("carol after the second set: %+v", c)
	}

	if out := mustUser(t, "", "remove", "alice", url); out != "user alice removed\n" {
		t.Errorf("remove: %q", out)
	}
	if users := listUsers(t, db); len(users) != 1 || users["carol"].Name != "carol" {
		t.Errorf("after removing alice: %+v", users)
	}
}

// Every refusal says what is wrong and changes nothing.
func TestUserCommandsRefuseBadInput(t *testing.T) {
	db := pgtest.New(t)
	url := "--database-url=" + db.AdminURL
	mustUser(t, "pw\n", "add", "taken", "--tenant", "acme", url)
	cases := []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"bad user name", "pw\n", []string{"add", "o'brien", "--tenant", "acme", url}, `user name "o'brien": user names use letters, digits and _ . @ -`},
		{"bad tenant", "pw\n", []string{"add", "dave", "--tenant", "acme corp", url}, `tenant "acme corp": tenant names use letters, digits and _ . @ : -`},
		{"bad tenant in a list", "pw\n", []string{"add", "dave", "--tenants", "acme,'x", url}, `tenant "'x": tenant names use`},
		{"no tenant", "pw\n", []string{"add", "dave", url}, "give the user's tenant (--tenant T) or the tenants it may choose from (--tenants A,B)"},
		{"both", "pw\n", []string{"add", "dave", "--tenant", "acme", "--tenants", "acme", url}, "give --tenant or --tenants, not both"},
		{"default without a list", "pw\n", []string{"add", "dave", "--tenant", "acme", "--default", "acme", url}, "--default goes with --tenants"},
		{"default outside the list", "pw\n", []string{"add", "dave", "--tenants", "acme", "--default", "globex", url}, `default tenant "globex" is not one of the user's tenants`},
		{"negative limit", "pw\n", []string{"add", "dave", "--tenant", "acme", "--max-connections", "-2", url}, "--max-connections: give at least 1"},
		{"empty password", "\n", []string{"add", "dave", "--tenant", "acme", url}, "empty password"},
		{"no password at all", "", []string{"add", "dave", "--tenant", "acme", url}, "reading the password from standard input"},
		// Names taken or unknown are refused before the password is read (there is none here).
		{"taken", "", []string{"add", "taken", "--tenant", "acme", url}, `user "taken": already exists`},
		{"two names", "", []string{"remove", "a", "b", url}, "give one user name, got 2"},
		{"no name", "", []string{"disable", url}, "give one user name, got 0"},
		{"unknown user", "", []string{"remove", "nobody", url}, `user "nobody": no such user`},
		{"set nothing", "", []string{"set", "taken", url}, "nothing to change"},
		{"set a bad tenant", "", []string{"set", "taken", "--tenant", "a b", url}, `tenant "a b": tenant names use`},
		{"set a default alone", "", []string{"set", "taken", "--default", "acme", url}, "give the user's tenant"},
		{"set a negative limit", "", []string{"set", "taken", "--max-connections", "-1", url}, "max connections -1: give at least 1"},
		{"set an unknown user", "", []string{"set", "nobody", "--max-connections", "3", url}, `user "nobody": no such user`},
		{"unknown user's password", "", []string{"passwd", "nobody", url}, `user "nobody": no such user`},
		{"list with a name", "", []string{"list", "x", url}, "takes no user name"},
		{"no database", "", []string{"list", "--database-url="}, "give --database-url or set DATABASE_URL"},
		{"the directory role", "", []string{"disable", "taken", "--database-url=" + db.DirectoryURL}, "written with a superuser URL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := user(t, c.stdin, c.args...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
	if users := listUsers(t, db); len(users) != 1 || users["taken"].Disabled || users["taken"].Tenant != "acme" {
		t.Errorf("users after refused commands: %+v", users)
	}
}

// The built binary: the password on standard input, DATABASE_URL, exit statuses.
func TestUserCommandsThroughTheBinary(t *testing.T) {
	db := pgtest.New(t)
	cmd := exec.Command(binary, "user", "add", "dave", "--tenant", "acme", "--database-url", db.AdminURL)
	cmd.Stdin = strings.NewReader("dave-pw\n")
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "user dave added (tenant acme)\n" {
		t.Fatalf("add: %v\n%s", err, out)
	}
	if v := listUsers(t, db)["dave"].Verifier; !passwordMatches(t, v, "dave-pw") {
		t.Errorf("dave's verifier %q is not his password's", v)
	}
	out2, code := run(t, []string{"DATABASE_URL=" + db.AdminURL}, "user", "list")
	if code != 0 || !strings.Contains(out2, "dave  acme     -        -                enabled") {
		t.Errorf("list: exit %d\n%s", code, out2)
	}
	out2, code = run(t, nil, "user", "remove", "nobody", "--database-url", db.AdminURL)
	if code != 1 || !strings.Contains(out2, `tenantproxy user: user "nobody": no such user`) {
		t.Errorf("remove nobody: exit %d\n%s", code, out2)
	}
	out2, code = run(t, nil, "user", "rename", "dave")
	if code != 2 || !strings.Contains(out2, `unknown subcommand "rename"`) {
		t.Errorf("unknown subcommand: exit %d\n%s", code, out2)
	}
}

// At a terminal the password is asked twice and not echoed. script(1) gives the command one.
func TestUserPasswordFromATerminal(t *testing.T) {
	db := pgtest.New(t)
	out, err := atTerminal(t, []string{"erin-pw", "erin-pw"}, binary, "user", "add", "erin", "--tenant", "acme", "--database-url", db.AdminURL)
	if err != nil || !strings.Contains(out, "Again: ") || !strings.Contains(out, "user erin added (tenant acme)") {
		t.Fatalf("add at a terminal: %v\n%s", err, out)
	}
	if strings.Contains(out, "erin-pw") {
		t.Errorf("the password was echoed:\n%s", out)
	}
	if v := listUsers(t, db)["erin"].Verifier; !passwordMatches(t, v, "erin-pw") {
		t.Errorf("erin's verifier %q is not her password's", v)
	}

	out, err = atTerminal(t, []string{"one", "two"}, binary, "user", "passwd", "erin", "--database-url", db.AdminURL)
	if err == nil || !strings.Contains(out, "the passwords differ") {
		t.Errorf("two different passwords: %v\n%s", err, out)
	}
	if v := listUsers(t, db)["erin"].Verifier; !passwordMatches(t, v, "erin-pw") {
		t.Error("a refused passwd changed the verifier")
	}
}

// atTerminal runs a command on a pseudo-terminal and types each answer after the next prompt.
func atTerminal(t *testing.T, answers []string, command ...string) (string, error) {
	t.Helper()
	quoted := make([]string, len(command))
	for i, arg := range command {
		quoted[i] = "'" + strings.ReplaceAll(arg, "'", `'\''`) + "'"
	}
	cmd := exec.Command("script", "-qefc", strings.Join(quoted, " "), "/dev/null")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("script(1), from util-linux, gives the command a terminal: %v", err)
	}
	defer stdin.Close()
	for i, answer := range answers {
		prompt := "Password: "
		if i > 0 {
			prompt = "Again: "
		}
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), prompt) {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("no %q prompt within 10s:\n%s", prompt, out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		if _, err := io.WriteString(stdin, answer+"\r"); err != nil {
			t.Fatal(err)
		}
	}
	err = cmd.Wait()
	return out.String(), err
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
