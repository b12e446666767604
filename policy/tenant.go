package policy

import (
	"fmt"
	"slices"
)

// Tenants maps each user to the tenants it may act for.
type Tenants struct {
	users map[string]userTenants
}

type userTenants struct {
	fixed    string   // the only tenant, or ""
	allowed  []string // tenants the client may pick from
	fallback string   // picked when the client picks none
}

// TenantError is a refused tenant choice. Its message names the tenant, for the client.
type TenantError struct{ Message string }

func (e *TenantError) Error() string { return e.Message }

// NewTenants returns an empty map; Add fills it.
func NewTenants() *Tenants { return &Tenants{users: map[string]userTenants{}} }

// AddFixed gives user exactly one tenant.
func (t *Tenants) AddFixed(user, tenant string) {
	t.users[user] = userTenants{fixed: tenant}
}

// AddChoice lets user pick among allowed, with fallback (may be "") when it picks none.
func (t *Tenants) AddChoice(user string, allowed []string, fallback string) {
	t.users[user] = userTenants{allowed: slices.Clone(allowed), fallback: fallback}
}

// Resolve returns the tenant a client of user acts for, given the tenant it asked for ("" for
// none). A user with a fixed tenant may only ask for that tenant.
func (t *Tenants) Resolve(user, requested string) (string, error) {
	u, ok := t.users[user]
	if !ok {
		return "", &TenantError{fmt.Sprintf("user %q has no tenant", user)}
	}
	if u.fixed != "" {
		if requested != "" && requested != u.fixed {
			return "", &TenantError{fmt.Sprintf("user %q may not act for tenant %q", user, requested)}
		}
		return u.fixed, nil
	}
	if requested == "" {
		if u.fallback == "" {
			return "", &TenantError{fmt.Sprintf("user %q must choose a tenant: add -c tenant=NAME to options (PGOPTIONS) or a tenant startup parameter", user)}
		}
		return u.fallback, nil
	}
	if !slices.Contains(u.allowed, requested) {
		return "", &TenantError{fmt.Sprintf("user %q may not act for tenant %q", user, requested)}
	}
	return requested, nil
}
