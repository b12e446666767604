// Package accounts answers who is logging in: the user's password verifier, the tenants it may
// act for, its limits. The configuration file's users and admins come first; the tenant
// directory (package directory), when there is one, answers for every other name. A reload
// replaces the file's accounts at once; the directory's change as it reports them.
package accounts

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/xdg-go/scram"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/directory"
	"github.com/tenantproxy/tenantproxy/internal/scramsecret"
)

// Account is one user (or admin) as a login sees it.
type Account struct {
	Name string
	// SCRAM is the user's SCRAM-SHA-256 verifier; nil when it has an md5 one (MD5).
	SCRAM *scram.StoredCredentials
	// MD5 is "md5" + hex(md5(password + user)), for users of allow_md5.
	MD5 string
	// AllowExplain: the user is trusted with EXPLAIN (config.User.AllowExplain).
	AllowExplain bool
	// MaxConnections caps the user's client connections (0: the default).
	MaxConnections int
	// Directory: the account comes from the tenant directory, not the file.
	Directory bool

	tenant        string   // the only tenant, or ""
	tenants       []string // the tenants the client may pick from
	defaultTenant string   // picked when the client picks none
}

// TenantError is a refused tenant choice. Its message names the tenant, for the client.
type TenantError struct{ Message string }

func (e *TenantError) Error() string { return e.Message }

// Tenant returns the tenant a client of the account acts for, given the one it asked for ("" for
// none). A user with one tenant may only ask for that one.
func (a *Account) Tenant(requested string) (string, error) {
	if a.tenant != "" {
		if requested != "" && requested != a.tenant {
			return "", &TenantError{fmt.Sprintf("user %q may not act for tenant %q", a.Name, requested)}
		}
		return a.tenant, nil
	}
	if requested == "" {
		if a.defaultTenant == "" {
			return "", &TenantError{fmt.Sprintf("user %q must choose a tenant: add -c tenant=NAME to options (PGOPTIONS) or a tenant startup parameter", a.Name)}
		}
		return a.defaultTenant, nil
	}
	if !slices.Contains(a.tenants, requested) {
		return "", &TenantError{fmt.Sprintf("user %q may not act for tenant %q", a.Name, requested)}
	}
	return requested, nil
}

// MayActFor reports whether a client of the account may act for tenant.
func (a *Account) MayActFor(tenant string) bool {
	return a.tenant == tenant || a.tenant == "" && slices.Contains(a.tenants, tenant)
}

// Book holds the accounts. It is safe for concurrent use.
type Book struct {
	file atomic.Pointer[fileAccounts]
	dir  *directory.Directory
}

// fileAccounts are the configuration file's users and admins.
type fileAccounts struct {
	users, admins map[string]*Account
}

// New returns the accounts of cfg's file, and of dir when it is not nil.
func New(cfg *config.Config, dir *directory.Directory) (*Book, error) {
	b := &Book{dir: dir}
	if err := b.Reload(cfg); err != nil {
		return nil, err
	}
	return b, nil
}

// Reload replaces the file's accounts with cfg's.
func (b *Book) Reload(cfg *config.Config) error {
	f := &fileAccounts{users: map[string]*Account{}, admins: map[string]*Account{}}
	for name, u := range cfg.Users {
		a, err := withVerifier(name, u.Password)
		if err != nil {
			return fmt.Errorf("users.%s.password: %w", name, err)
		}
		a.AllowExplain, a.MaxConnections = u.AllowExplain, u.MaxConnections
		a.tenant, a.tenants, a.defaultTenant = u.Tenant, slices.Clone(u.Tenants), u.DefaultTenant
		f.users[name] = a
	}
	for name, admin := range cfg.Admins {
		a, err := withVerifier(name, admin.Password)
		if err != nil {
			return fmt.Errorf("admins.%s.password: %w", name, err)
		}
		f.admins[name] = a
	}
	b.file.Store(f)
	return nil
}

func withVerifier(name, verifier string) (*Account, error) {
	a := &Account{Name: name}
	if !strings.HasPrefix(verifier, "SCRAM-SHA-256$") {
		a.MD5 = verifier
		return a, nil
	}
	creds, err := scramsecret.Parse(verifier)
	if err != nil {
		return nil, err
	}
	a.SCRAM = &creds
	return a, nil
}

// User returns the user called name: the file's, else the directory's. It returns nil for a
// name that is neither, a disabled directory user, and an admin (admins never reach tenant
// data). An error means the directory could not be asked.
func (b *Book) User(ctx context.Context, name string) (*Account, error) {
	f := b.file.Load()
	if a, ok := f.users[name]; ok {
		return a, nil
	}
	if _, admin := f.admins[name]; admin || b.dir == nil {
		return nil, nil
	}
	u, found, err := b.dir.Lookup(ctx, name)
	if err != nil || !found || u.Disabled {
		return nil, err
	}
	creds, err := scramsecret.Parse(u.Verifier)
	if err != nil {
		return nil, fmt.Errorf("tenant directory: user %q: %w", name, err)
	}
	return &Account{
		Name: name, SCRAM: &creds, MaxConnections: u.MaxConnections, Directory: true,
		tenant: u.Tenant, tenants: u.Tenants, defaultTenant: u.DefaultTenant,
	}, nil
}

// Admin returns the admin called name, or nil.
func (b *Book) Admin(name string) *Account { return b.file.Load().admins[name] }

// Changes reports the names of directory users that changed (see directory.Changes); nil
// without a directory.
func (b *Book) Changes() <-chan string {
	if b.dir == nil {
		return nil
	}
	return b.dir.Changes()
}
