package proxy_test

// What one client can make the shared proxy hold: bounded before it logs in, while the guard
// parses its statements, and by the prepared statements it keeps.

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/config"
)

func memoryCases() []customCase {
	return []customCase{
		{"startup packet over 10,000 bytes refused before it is read", func(t *testing.T, a *arena) {
			// PostgreSQL refuses such a packet; the proxy answers on seeing its length, without
			// waiting for (or holding) the 30 MB it announces.
			r := dialRaw(t, a.p.addr)
			header := make([]byte, 8)
			binary.BigEndian.PutUint32(header, 30<<20)
			binary.BigEndian.PutUint32(header[4:], 3<<16)
			r.write(header)
			r.fatalThenClosed("08P01")
			a.aftermath(t, a.p, join(t, a.p, "alice", "acme"), nil)
		}},
		{"SASL message over 10,000 bytes refused", func(t *testing.T, a *arena) {
			r := dialRaw(t, a.p.addr)
			r.write(startupPacket(map[string]string{"user": "nobody", "database": "app"}))
			until[*pgproto3.AuthenticationSASL](r)
			r.send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: make([]byte, 20000)})
			r.fatalThenClosed("08P01")
			a.aftermath(t, a.p, join(t, a.p, "alice", "acme"), nil)
		}},
		{"statement too large for the guard refused, not passed unchecked", func(t *testing.T, a *arena) {
			p := disposableProxy(t, a.db, a.mode, sharedPool(a.mode), func(c *config.Config) { c.Limits.GuardMemory = 64 << 20 })
			victim := join(t, p, "bob", "globex")
			r := rawAs(t, p, "alice")
			r.conn.SetDeadline(time.Now().Add(opTimeout))
			huge := "SELECT ARRAY[" + strings.Repeat("0,", 512<<10) + "0] /* session */; SET app.current_tenant_id = 'globex'"
			r.send(&pgproto3.Query{String: huge})
			wantEvents(t, a.events(r, 1), "E 54000", "Z I")
			r.send(&pgproto3.Parse{Query: huge[:strings.Index(huge, ";")]}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
			wantEvents(t, a.events(r, 1), "E 54000", "Z I")
			a.rawVerify(t, r, "acme")
			r.conn.Close()
			a.aftermath(t, p, nil, victim)
		}},
		{"prepared statements of one client bounded", func(t *testing.T, a *arena) {
			p := disposableProxy(t, a.db, a.mode, sharedPool(a.mode), func(c *config.Config) { c.Limits.ClientStatementMemory = 1 << 20 })
			victim := join(t, p, "bob", "globex")
			r := rawAs(t, p, "alice")
			big := "SELECT '" + strings.Repeat("x", 400<<10) + "' AS n"
			var got []string
			for i := range 4 {
				r.send(&pgproto3.Parse{Name: "big" + string(rune('a'+i)), Query: big + string(rune('a'+i))}, &pgproto3.Sync{})
				got = append(got, a.events(r, 1)...)
			}
			want := []string{"1", "Z I", "1", "Z I", "E 54000", "Z I", "E 54000", "Z I"}
			if a.mode == "session" { // the backend is the client's own: PostgreSQL's limits apply
				want = []string{"1", "Z I", "1", "Z I", "1", "Z I", "1", "Z I"}
			}
			wantEvents(t, got, want...)
			a.rawVerify(t, r, "acme")
			r.conn.Close()
			a.aftermath(t, p, nil, victim)
		}},
	}
}
