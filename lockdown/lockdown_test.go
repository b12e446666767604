package lockdown_test

import (
	"regexp"
	"testing"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
	"github.com/tenantproxy/tenantproxy/lockdown"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var identifier = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

func TestEveryRuleSaysWhy(t *testing.T) {
	used := map[lockdown.Rule]bool{}
	for _, f := range lockdown.Functions {
		used[f.Rule] = true
	}
	for _, r := range lockdown.Rules {
		if r.Why() == "" {
			t.Errorf("rule %s has no reason", r)
		}
		if !used[r] {
			t.Errorf("rule %s has no function", r)
		}
		delete(used, r)
	}
	for r := range used {
		t.Errorf("rule %s is not in lockdown.Rules", r)
	}
}

func TestFunctionsAreNamedOnce(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range lockdown.Functions {
		if !identifier.MatchString(f.Name) {
			t.Errorf("%q is not a plain function name", f.Name)
		}
		if seen[f.Name] {
			t.Errorf("%s is listed twice", f.Name)
		}
		seen[f.Name] = true
		if rule, ok := lockdown.Revoked(f.Name); !ok || rule != f.Rule {
			t.Errorf("Revoked(%q) = %s, %v; want %s", f.Name, rule, ok, f.Rule)
		}
	}
	if _, ok := lockdown.Revoked("abs"); ok {
		t.Error("abs is reported revoked")
	}
	if len(lockdown.FunctionNames()) != len(lockdown.Functions) {
		t.Error("FunctionNames does not name every function")
	}
}

func TestViewsAndLanguagesAreNamedOnce(t *testing.T) {
	for what, names := range map[string][]string{"view": lockdown.Views, "language": lockdown.Languages} {
		seen := map[string]bool{}
		for _, n := range names {
			if !identifier.MatchString(n) || seen[n] {
				t.Errorf("%s %q: not a plain name, or listed twice", what, n)
			}
			seen[n] = true
		}
	}
}
