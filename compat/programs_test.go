package compat

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
)

// program is a client written in another language: a small program under tests/<dir> that
// reads its settings from COMPAT_* variables, runs the scenario and prints its summary as JSON.
type program struct {
	dir     string
	command []string
	// needs are files the program loads besides its command (the JVM's class path).
	needs []string
	// install says how to get the runtime and libraries.
	install string
}

const howToInstall = "run scripts/drivers-deps (make deps does) to install "

// Debian's interpreters, for the libraries Debian packages: another python3 or ruby on PATH
// (pyenv, rbenv) would not see them.
const (
	debianPython = "/usr/bin/python3"
	debianRuby   = "/usr/bin/ruby"
)

var javaClassPath = []string{
	"/usr/share/java/postgresql.jar",
	"/usr/share/java/HikariCP.jar",
	"/usr/share/java/slf4j-api.jar",
	"/usr/share/java/slf4j-simple.jar",
}

var (
	pgJDBC = program{
		dir:     "java",
		command: []string{"java", "-cp", strings.Join(javaClassPath, ":"), "Compat.java"},
		needs:   javaClassPath,
		install: "default-jdk-headless libpostgresql-jdbc-java libhikaricp-java libslf4j-java",
	}
	activeRecord = program{dir: "ruby", command: []string{debianRuby, "compat.rb"}, install: "ruby ruby-activerecord ruby-pg"}
	asyncpg      = program{dir: "python", command: []string{debianPython, "compat_asyncpg.py"}, install: "python3 python3-asyncpg"}
	psycopg      = program{dir: "python", command: []string{debianPython, "compat_psycopg.py"}, install: "python3 python3-psycopg python3-psycopg-pool"}
	sqlAlchemy   = program{dir: "python", command: []string{debianPython, "compat_sqlalchemy.py"}, install: "python3 python3-sqlalchemy python3-psycopg2"}
	django       = program{dir: "python", command: []string{debianPython, "compat_django.py"}, install: "python3 python3-django python3-psycopg2"}
	pdo          = program{dir: "php", command: []string{"php", "compat_pdo.php"}, install: "php-cli php-pgsql"}
	sequelize    = program{dir: "node", command: []string{"node", "compat_sequelize.mjs"}, install: "nodejs npm, then the packages of tests/node (npm ci)"}
	typeORM      = program{dir: "node", command: []string{"node", "compat_typeorm.mjs"}, install: "nodejs npm, then the packages of tests/node (npm ci)"}
	postgresJS   = program{dir: "node", command: []string{"node", "compat_postgresjs.mjs"}, install: "nodejs npm, then the packages of tests/node (npm ci)"}
)

func (p program) run(t *testing.T, tg *target) {
	tg.check(t, p.summary(t, tg))
}

// summary runs the program against tg and returns what it reports.
func (p program) summary(t *testing.T, tg *target) *summary {
	t.Helper()
	path, err := exec.LookPath(p.command[0])
	if err != nil {
		t.Fatalf("%s is not installed: %s%s", p.command[0], howToInstall, p.install)
	}
	for _, f := range p.needs {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%s is missing: %s%s", f, howToInstall, p.install)
		}
	}
	cmd := exec.CommandContext(opContext(t), path, p.command[1:]...)
	cmd.Dir = filepath.Join(pgtest.RepoRoot(), "tests", p.dir)
	cmd.Env = append(cleanEnv(), tg.env()...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("%s: %v (%s%s)", strings.Join(p.command, " "), err, howToInstall, p.install)
		}
		t.Fatalf("tests/%s/%s failed (%v):\n%s%s", p.dir, p.command[len(p.command)-1], err, stderr.String(), out)
	}
	var s summary
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatalf("tests/%s/%s printed no summary: %v\n%s\n%s", p.dir, p.command[len(p.command)-1], err, out, stderr.String())
	}
	return &s
}
