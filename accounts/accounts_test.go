package accounts_test

import (
	"context"
	"testing"

	"github.com/tenantproxy/tenantproxy/accounts"
	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/scramsecret"
)

func book(t *testing.T) *accounts.Book {
	t.Helper()
	v, err := scramsecret.New("secret")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.Users = map[string]config.User{
		"alice":   {Password: v, Tenant: "acme", MaxConnections: 3},
		"carol":   {Password: v, Tenants: []string{"acme", "globex"}, DefaultTenant: "acme"},
		"dave":    {Password: v, Tenants: []string{"acme", "globex"}},
		"mallory": {Password: "md5" + "0123456789abcdef0123456789abcdef", Tenant: "acme"},
	}
	cfg.Admins = map[string]config.Admin{"root": {Password: v}}
	b, err := accounts.New(&cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTenantChoice(t *testing.T) {
	b := book(t)
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
	}
	for _, c := range cases {
		a, err := b.User(context.Background(), c.user)
		if err != nil || a == nil {
			t.Fatalf("User(%s) = %v, %v", c.user, a, err)
		}
		got, err := a.Tenant(c.requested)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("%s asking for %q: got %q, %v; want %q (ok %v)", c.user, c.requested, got, err, c.want, c.ok)
		}
		if err == nil && !a.MayActFor(got) {
			t.Errorf("%s may not act for %q, which Tenant gave", c.user, got)
		}
	}
}

func TestAccountsOfTheFile(t *testing.T) {
	b := book(t)
	ctx := context.Background()
	alice, _ := b.User(ctx, "alice")
	if alice.SCRAM == nil || alice.MaxConnections != 3 || alice.Directory {
		t.Errorf("alice = %+v", alice)
	}
	if m, _ := b.User(ctx, "mallory"); m == nil || m.SCRAM != nil || m.MD5 == "" {
		t.Errorf("an md5 user keeps its md5 verifier: %+v", m)
	}
	if a, err := b.User(ctx, "root"); a != nil || err != nil {
		t.Errorf("an admin must not be a user: %v, %v", a, err)
	}
	if a, err := b.User(ctx, "nobody"); a != nil || err != nil {
		t.Errorf("unknown user: %v, %v", a, err)
	}
	if b.Admin("root") == nil || b.Admin("alice") != nil {
		t.Error("Admin finds admins only")
	}

	// A reload replaces the file's accounts.
	v, _ := scramsecret.New("other")
	cfg := config.Defaults()
	cfg.Users = map[string]config.User{"bob": {Password: v, Tenant: "globex"}}
	if err := b.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	if a, _ := b.User(ctx, "alice"); a != nil {
		t.Error("alice survived a reload that removed her")
	}
	if a, _ := b.User(ctx, "bob"); a == nil || !a.MayActFor("globex") || a.MayActFor("acme") {
		t.Errorf("bob after the reload: %+v", a)
	}
	if b.Admin("root") != nil {
		t.Error("root survived a reload that removed it")
	}
}
