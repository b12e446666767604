package proxy

import (
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/tenantproxy/tenantproxy/guard"
	"github.com/tenantproxy/tenantproxy/internal/guc"
	"github.com/tenantproxy/tenantproxy/internal/wire"
	"github.com/tenantproxy/tenantproxy/session"
)

// clientSession is what a client's backend must carry, whichever backend serves it: the
// tenant context, and the client's settings. It follows what the client does to them (a SET of a
// tracked setting, RESET ALL, DISCARD ALL) and says what must be put back, and when.
type clientSession struct {
	tenant string
	// setting is the tenant context's setting (app.current_tenant_id).
	setting string
	// params are the client's settings as it believes them to be; startup are what it asked for
	// at startup, which RESET ALL and DISCARD ALL return to.
	params, startup *session.Settings
	// resetPending: the client reset its session; its settings go back to the startup ones.
	resetPending bool
	// changing: the client changed settings (SET, SET LOCAL, RESET, DISCARD ALL), and its
	// transaction, or the answers that report the new values, may not be over yet.
	changing bool
	// sessionChanged: the client changed settings that may outlive its transaction; in
	// transaction pooling the proxy reads them back once the transaction is over.
	sessionChanged bool
	// custom are the custom settings (myapp.flag) the client ever set at session level, which
	// pg_settings does not list: they are read back by name.
	custom []string
	// effectful are the client's statement names ("" for the unnamed one) whose text has
	// effects the proxy acts on each time it runs, with the guard's verdict.
	effectful map[string]guard.Verdict
}

func newClientSession(tenant, setting string, startup map[string]string) *clientSession {
	return &clientSession{
		tenant:  tenant,
		setting: setting,
		params:  session.NewSettings(startup),
		startup: session.NewSettings(startup),
	}
}

// adoptServerSpelling takes the server's spelling of the reported settings the client chose at
// startup (TimeZone 'utc' is reported as 'UTC'), so that later checkouts compare equal.
func (s *clientSession) adoptServerSpelling(b *session.Backend) {
	for _, name := range s.startup.Names() {
		if b.Reports(name) {
			s.startup.Set(name, b.Param(name))
			s.params.Set(name, b.Param(name))
		}
	}
}

// applyEffects prepares for what an allowed statement will do to the session: a reset of the
// tenant context and settings, which must be put back; a change of settings, under which the
// server may parse the client's next statements before the proxy learns the new values.
func (s *clientSession) applyEffects(b *session.Backend, v guard.Verdict) {
	if v.ChangesSettings {
		s.changing = true
	}
	if v.ChangesSessionSettings {
		s.sessionChanged = true
	}
	for name := range strings.SplitSeq(v.CustomSettings, ",") {
		if name != "" && !slices.Contains(s.custom, name) {
			s.custom = append(s.custom, name)
		}
	}
	if v.ResetsContext {
		// Until the proxy has put it back and seen it committed, the backend's context is
		// unknown, which makes sure it is set again, and never trusted meanwhile.
		b.ForgetContext()
		s.resetPending = true
	}
}

// rememberEffects records the effects of the statement the client prepares under name: they
// happen each time it is executed.
func (s *clientSession) rememberEffects(name []byte, v guard.Verdict) {
	if v.ResetsContext || v.ChangesSettings {
		if s.effectful == nil {
			s.effectful = map[string]guard.Verdict{}
		}
		s.effectful[string(name)] = v
	} else if len(s.effectful) > 0 {
		delete(s.effectful, string(name))
	}
}

// effectsOf returns the effects of the statement prepared under name, if it has any.
func (s *clientSession) effectsOf(name []byte) (guard.Verdict, bool) {
	if len(s.effectful) == 0 {
		return guard.Verdict{}, false
	}
	v, ok := s.effectful[string(name)]
	return v, ok
}

// restoreSQL puts the tenant context and the client's startup settings back.
func (s *clientSession) restoreSQL() string {
	sql := session.SetStatement(s.setting, s.tenant)
	for _, name := range s.startup.Names() {
		value, _ := s.startup.Get(name)
		sql += "; " + session.SetStatement(name, value)
	}
	return sql
}

// noteParameter follows the client's own change of a reported setting.
func (s *clientSession) noteParameter(msg []byte) {
	name, value, ok := wire.DecodeParameterStatus(msg)
	if !ok {
		return
	}
	if setting, _ := guc.Lookup(string(name)); !setting.ReadOnly {
		s.params.Set(string(name), string(value))
	}
}

// sessionSettingsSQL lists the settings the session holds at session level: those pg_settings
// lists, and the custom ones the client set, by name (NULL when undefined).
func (s *clientSession) sessionSettingsSQL() string {
	sql := "SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session'"
	for _, name := range s.custom {
		literal := "'" + strings.ReplaceAll(name, "'", "''") + "'"
		sql += " UNION ALL SELECT " + literal + ", pg_catalog.current_setting(" + literal + ", true)"
	}
	return sql
}

// takeSessionSettings adopts the settings the server listed (sessionSettingsSQL) as the client's,
// for those the server does not report (ParameterStatus carries the others): whatever the client
// set, reset or rolled back, this is what its session holds now. The tenant context is the
// proxy's.
func (s *clientSession) takeSessionSettings(rows [][]*string, b *session.Backend, reserved func(string) bool) map[string]string {
	values := map[string]string{}
	for _, row := range rows {
		if len(row) != 2 || row[0] == nil || row[1] == nil || reserved(guc.Fold(*row[0])) || b.Reports(*row[0]) {
			continue
		}
		values[*row[0]] = *row[1]
	}
	for _, name := range s.params.Names() {
		if _, kept := values[name]; !kept && !b.Reports(name) {
			s.params.Delete(name)
		}
	}
	for name, value := range values {
		s.params.Set(name, value)
	}
	s.sessionChanged = false
	return values
}

// settled runs once every request has been answered. idle says whether the backend is outside
// any transaction with nothing in flight.
func (s *clientSession) settled(idle bool) {
	if s.resetPending {
		// RESET ALL and DISCARD ALL take a client back to its startup settings.
		s.resetPending = false
		s.params = s.startup.Clone()
	}
	if idle {
		s.changing = false // answered, and out of any transaction: params say it all
	}
}

// statementScope says with whom a statement the client prepares now may be shared: clients of
// its tenant (nothing a tenant can observe of a statement is shared with another) that parse it
// under the same settings (the ones that matter to parsing). While a change of settings may be in
// flight or in force only inside the transaction, the server may parse under settings the
// client's record does not show yet: the statement is then the client's own.
func (s *clientSession) statementScope(ownScopes *atomic.Uint64) string {
	if s.changing {
		return "local " + strconv.FormatUint(ownScopes.Add(1), 10)
	}
	return s.tenant + "\x00" + s.params.ParseKey()
}
