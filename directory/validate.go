package directory

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/scramsecret"
)

// Validate checks u against the rules of the config file's users: the user name and tenant name
// rules, one tenant or a choice of tenants with a default among them. Tenants need not be listed
// in the config's tenancy.tenants. The error names every problem. The verifier is not checked
// here (it may not be made yet): Add checks it.
func (u User) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if !config.ValidUser(u.Name) {
		bad("user name %q: user names use %s", u.Name, config.UserNameRule)
	}
	switch {
	case u.Tenant != "" && len(u.Tenants) > 0:
		bad("give one tenant or a list of tenants, not both")
	case u.Tenant != "":
		if !config.ValidTenant(u.Tenant) {
			bad("tenant %q: tenant names use %s", u.Tenant, config.TenantNameRule)
		}
		if u.DefaultTenant != "" {
			bad("a default tenant is only for users with a list of tenants")
		}
	case len(u.Tenants) > 0:
		for i, tenant := range u.Tenants {
			if !config.ValidTenant(tenant) {
				bad("tenant %q: tenant names use %s", tenant, config.TenantNameRule)
			} else if slices.Contains(u.Tenants[:i], tenant) {
				bad("tenant %q is listed twice", tenant)
			}
		}
		if u.DefaultTenant != "" && !slices.Contains(u.Tenants, u.DefaultTenant) {
			bad("default tenant %q is not one of the user's tenants", u.DefaultTenant)
		}
	default:
		bad("a user needs a tenant or a list of tenants")
	}
	if err := validMaxConnections(u.MaxConnections); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func validMaxConnections(n int) error {
	if n < 0 || n > math.MaxInt32 {
		return fmt.Errorf("max connections %d: give at least 1 (at most %d), or 0 for no limit of the user's own", n, math.MaxInt32)
	}
	return nil
}

func validVerifier(verifier string) error {
	if _, err := scramsecret.Parse(verifier); err != nil {
		return fmt.Errorf("verifier: %w", err)
	}
	return nil
}
