package proxy_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// What an attacker can put in the startup packet.

// ---- the startup packet ----

type startupCase struct {
	name  string
	user  string
	extra []string          // URL query parameters, as pgx sends them in the startup packet
	raw   map[string]string // or a raw startup packet
	code  string            // "" means the login must succeed (and change nothing)
	msg   string
	// orLogin: the login may also succeed, as the user's own tenant.
	orLogin bool
}

var startupAttacks = []startupCase{
	{"options -c app.current_tenant_id", "alice", []string{"options=-c%20app.current_tenant_id%3Dglobex"}, nil, "42501", "reserved", false},
	{"options -c odd case", "alice", []string{"options=-c%20App.Current_Tenant_Id%3Dglobex"}, nil, "42501", "reserved", false},
	{"options --dashed-name", "alice", []string{"options=--app.current-tenant-id%3Dglobex"}, nil, "42501", "reserved", false},
	{"options -c glued", "alice", []string{"options=-capp.current_tenant_id%3Dglobex"}, nil, "42501", "reserved", false},
	{"options tenant then setting", "alice", []string{"options=-c%20tenant%3Dacme%20-c%20app.current_tenant_id%3Dglobex"}, nil, "42501", "reserved", false},
	{"options escaped space", "alice", []string{`options=-c%5C%20app.current_tenant_id%3Dglobex`}, nil, "42602", "invalid configuration parameter name", false},
	{"options another tenant", "alice", []string{"options=-c%20tenant%3Dglobex"}, nil, "28000", `may not act for tenant "globex"`, false},
	{"options role", "alice", []string{"options=-c%20role%3Dtenantproxy_owner"}, nil, "42501", "may not be set", false},
	{"options session_authorization", "alice", []string{"options=-c%20session_authorization%3Dpostgres"}, nil, "42501", "may not be set", false},
	{"options search_path with pg_temp", "alice", []string{"options=-c%20search_path%3Dpg_temp"}, nil, "42501", "temporary schema", false},
	{"options switch other than -c", "alice", []string{"options=-B%20100"}, nil, "0A000", "unsupported option", false},
	{"options superuser setting", "alice", []string{"options=-c%20log_statement%3Dall"}, nil, "42501", "permission denied", false},
	{"options default_transaction_read_only", "alice", []string{"options=-c%20default_transaction_read_only%3Don"}, nil, "", "", false},
	{"setting as a startup parameter", "alice", []string{"app.current_tenant_id=globex"}, nil, "42501", "reserved", false},
	{"setting as a startup parameter, odd case", "alice", []string{"APP.Current_Tenant_ID=globex"}, nil, "42501", "reserved", false},
	{"setting with a trailing space", "alice", nil, map[string]string{"user": "alice", "database": "app", "app.current_tenant_id ": "globex"}, "42501", "reserved", false},
	{"another namespace member", "alice", []string{"app.tenant=globex"}, nil, "42501", "reserved", false},
	{"tenant parameter of another tenant", "alice", []string{"tenant=globex"}, nil, "28000", `may not act for tenant "globex"`, false},
	{"tenant parameter in upper case", "alice", []string{"TENANT=globex"}, nil, "28000", `may not act for tenant "globex"`, false},
	{"tenant parameter with a quote", "carol", []string{"tenant=globex%27"}, nil, "28000", "does not exist", false},
	{"tenant chosen twice", "alice", []string{"tenant=acme", "options=-c%20tenant%3Dglobex"}, nil, "28000", "conflicting tenant choices", false},
	{"replication database", "alice", []string{"replication=database"}, nil, "42501", "replication", false},
	{"replication true", "alice", []string{"replication=true"}, nil, "42501", "replication", false},
	{"client_encoding SJIS", "alice", []string{"client_encoding=SJIS"}, nil, "0A000", "client_encoding", false},
	{"client_encoding win932", "alice", []string{"client_encoding=win932"}, nil, "0A000", "client_encoding", false},
	{"client_encoding GBK", "alice", []string{"client_encoding=GBK"}, nil, "0A000", "client_encoding", false},
	{"search_path with pg_temp", "alice", []string{"search_path=pg_temp,llmspell"}, nil, "42501", "temporary schema", false},
	{"application_name with a quote", "alice", []string{"application_name=x%27%3B%20SET%20app.current_tenant_id%3D%27globex"}, nil, "", "", false},
	{"DateStyle with a backslash", "alice", []string{`DateStyle=ISO%5C`}, nil, "22023", "invalid value for parameter", false},
	{"unknown setting", "alice", []string{"no_such_setting=1"}, nil, "42704", "unrecognized configuration parameter", false},
	{"standard_conforming_strings", "alice", []string{"standard_conforming_strings=off"}, nil, "0A000", "standard_conforming_strings", false},
	{"session_authorization parameter", "alice", []string{"session_authorization=postgres"}, nil, "42501", "may not be set", false},
	{"role parameter", "alice", []string{"role=tenantproxy_owner"}, nil, "42501", "may not be set", false},
	{"application_name naming the setting", "alice", []string{"application_name=app.current_tenant_id%3Dglobex"}, nil, "", "", false},
}

func (a *arena) runStartup(t *testing.T, sc startupCase) {
	p := a.p
	if sc.code == "" || sc.orLogin {
		// A login that may succeed gets a proxy of its own: what it leaves in the pool is
		// the subject of the settings leak cases, not of this one.
		p = startProxy(t, a.db, a.mode, sharedPool(a.mode))
	}
	victim := join(t, p, "bob", "globex")
	if sc.raw != nil {
		r := dialRaw(t, p.addr)
		r.write(startupPacket(sc.raw))
		e := until[*pgproto3.ErrorResponse](r)
		if e.Severity != "FATAL" || e.Code != sc.code || !strings.Contains(e.Message, sc.msg) {
			t.Errorf("got %s %s %q, want FATAL %s with %q", e.Severity, e.Code, e.Message, sc.code, sc.msg)
		}
	} else {
		conn, err := pgx.Connect(opContext(t), p.url(sc.user, sc.extra...))
		var pgErr *pgconn.PgError
		switch {
		case err == nil && (sc.code == "" || sc.orLogin):
			pe := &peer{conn: conn, user: sc.user, tenant: "acme"}
			pe.verify(t, a, "the client", false)
			conn.Close(ctx)
		case err == nil:
			conn.Close(ctx)
			t.Errorf("want FATAL %s with %q, the login succeeded", sc.code, sc.msg)
		case !errors.As(err, &pgErr) || pgErr.Severity != "FATAL" || pgErr.Code != sc.code || !strings.Contains(pgErr.Message, sc.msg):
			t.Errorf("want FATAL %s with %q, got %v", sc.code, sc.msg, err)
		}
	}
	if sc.code == "" || sc.orLogin {
		victim.base = victim.fingerprint(t) // the settings leak cases judge the rest
	}
	a.aftermath(t, p, join(t, p, "alice", "acme"), victim)
}
