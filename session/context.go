package session

import (
	"fmt"
	"strings"
	"time"

	"github.com/tenantproxy/tenantproxy/internal/guc"
)

// ApplyContext puts the tenant context and the client's settings (want) in place on b, in one
// round trip, and only when they differ from what b holds. Settings the client did not choose go
// back to the session's defaults, so nothing one client set reaches the next. Acquire calls it
// before the client's messages are sent, so a failure can never let them run under another
// tenant's context; the proxy calls it again after a client's RESET ALL or DISCARD ALL.
//
// Inside a transaction the statements join it, and a later ROLLBACK TO SAVEPOINT could undo
// them: the session's tenant is then left unknown (""), so the proxy sets it again after each
// of the client's batches until the transaction ends.
func (p *Pool) ApplyContext(b *Backend, tenant string, want *Settings) error {
	if want == nil {
		want = NewSettings(nil)
	}
	if b.tenant == tenant && b.settingsKey == want.key {
		return nil
	}
	sql := p.settingsSQL(b, tenant, want.values)
	if sql == "" {
		b.settingsKey = want.key
		return nil
	}
	if b.tenant != tenant {
		p.stats.switches.Add(1)
		b.tenant = ""
	}
	b.settingsKey = ""
	before := b.txStatus
	b.SetDeadline(time.Now().Add(p.cfg.CheckoutTimeout))
	err := b.Exec(sql)
	b.SetDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("setting the tenant context: %w", err)
	}
	if b.txStatus != before {
		return fmt.Errorf("setting the tenant context: transaction state went from %q to %q", before, b.txStatus)
	}
	if b.txStatus != 'I' {
		return nil
	}
	b.tenant = tenant
	// Settings the server does not report are known by what was set.
	for name, value := range want.values {
		if !b.Reports(name) {
			b.params[name] = value
		}
	}
	for name := range b.params {
		if _, wanted := want.values[name]; !wanted && !b.Reports(name) {
			delete(b.params, name)
		}
	}
	b.settingsKey = want.key
	return nil
}

// settingsSQL is what ApplyContext must send, or "".
func (p *Pool) settingsSQL(b *Backend, tenant string, want map[string]string) string {
	var parts []string
	if b.tenant != tenant {
		parts = append(parts, SetStatement(p.cfg.Setting, tenant))
	}
	// The reported settings are known from the server; a client that did not choose one gets
	// the session's default, whatever the backend's previous client chose.
	for name, def := range b.defaults {
		value, wanted := want[name]
		if !wanted {
			value = def
		}
		switch setting, _ := guc.Lookup(name); {
		case b.params[name] == value || setting.ReadOnly:
		case wanted:
			parts = append(parts, SetStatement(name, value))
		default:
			parts = append(parts, "RESET "+name)
		}
	}
	for name, value := range want {
		if !b.Reports(name) && b.params[name] != value {
			parts = append(parts, SetStatement(name, value))
		}
	}
	for name := range b.params {
		if _, wanted := want[name]; !wanted && !b.Reports(name) {
			parts = append(parts, "RESET "+name)
		}
	}
	return strings.Join(parts, "; ")
}

// SettingsMatch reports whether b holds exactly the settings of want, and the defaults for the
// rest.
func (p *Pool) SettingsMatch(b *Backend, want *Settings) bool {
	return b.settingsKey == want.key || p.settingsSQL(b, b.tenant, want.values) == ""
}
