package policy_test

import (
	"testing"

	"github.com/tenantproxy/tenantproxy/policy"
)

func TestTenantResolution(t *testing.T) {
	m := policy.NewTenants()
	m.AddFixed("alice", "acme")
	m.AddChoice("carol", []string{"acme", "globex"}, "acme")
	m.AddChoice("dave", []string{"acme", "globex"}, "")

	cases := []struct {
		user, requested, want string
		ok                    bool
	}{
		{"alice", "", "acme", true},
		{"alice", "acme", "acme", true},
		{"alice", "globex", "", false},
		{"carol", "", "acme", true},
		{"carol", "globex", "globex", true},
		{"carol", "initech", "", false},
		{"dave", "", "", false},
		{"dave", "globex", "globex", true},
		{"mallory", "", "", false},
	}
	for _, c := range cases {
		got, err := m.Resolve(c.user, c.requested)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("Resolve(%q, %q) = %q, %v; want %q, ok=%v", c.user, c.requested, got, err, c.want, c.ok)
		}
	}
	if _, err := m.Resolve("carol", "initech"); err == nil || err.Error() != `user "carol" may not act for tenant "initech"` {
		t.Errorf("refusal names the tenant: %v", err)
	}
}
