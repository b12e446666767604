package proxy_test

// What one client can make the shared proxy hold: bounded before it logs in, while the guard
// parses its statements, and by the prepared statements it keeps.

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgtest"
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
		{"large messages bounded for all clients, and a tenant's to half", func(t *testing.T, a *arena) {
			p := disposableProxy(t, a.db, a.mode, sharedPool(a.mode), func(c *config.Config) {
				c.MaxMessageSize, c.Limits.MessageMemory = 4<<20, 8<<20
				if a.mode == "session" {
					c.Pool.Size = 5 // a session each for the victim and the attacker's two, within shares
				}
			})
			victim := rawAs(t, p, "bob")
			victim.conn.SetDeadline(time.Now().Add(opTimeout))
			// The attacker sends most of two 3.5 MB statements on two connections and stalls:
			// the second does not fit its tenant's half, and is refused once it arrives.
			text := "SELECT length('" + strings.Repeat("x", 3500<<10) + "')"
			msg, err := (&pgproto3.Query{String: text}).Encode(nil)
			if err != nil {
				t.Fatal(err)
			}
			var stalled []*rawConn
			for range 2 {
				r := rawAs(t, p, "alice")
				r.conn.SetDeadline(time.Now().Add(opTimeout))
				r.write(msg[:3<<20])
				stalled = append(stalled, r)
			}
			pgtest.WaitFor(t, "the attacker's first statement to be held", func() bool {
				return metricValue(p, "tenantproxy_message_memory_bytes", nil) >= 3<<20
			})
			// The victim's tenant has its own half: its 3.5 MB statement runs.
			victim.send(&pgproto3.Query{String: text})
			wantEvents(t, a.events(victim, 1), "D 3584000", "C SELECT 1", "Z I")
			for _, r := range stalled {
				r.write(msg[3<<20:])
			}
			got := append(a.events(stalled[0], 1), a.events(stalled[1], 1)...)
			if !slices.Contains(got, "E 53200") || !slices.Contains(got, "D 3584000") {
				t.Errorf("the attacker's two statements: %q, want one run and one refused 53200", got)
			}
			for _, r := range stalled {
				a.rawVerify(t, r, "acme")
				r.conn.Close()
			}
			if n := metricValue(p, "tenantproxy_limit_refusals_total", map[string]string{"tenant": "acme", "limit": "message_memory"}); n != 1 {
				t.Errorf("refusals counted: %v", n)
			}
			pgtest.WaitFor(t, "the memory to be given back", func() bool {
				return metricValue(p, "tenantproxy_message_memory_bytes", nil) == 0
			})
			a.rawVerify(t, victim, "globex")
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
