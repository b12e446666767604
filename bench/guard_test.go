package bench

import (
	"strconv"
	"testing"

	"github.com/tenantproxy/tenantproxy/guard"
)

func newGuard() *guard.Guard {
	return guard.New(guard.Config{ReservedPrefixes: []string{"app."}, Mode: guard.TransactionMode})
}

// pgbench's select: no trigger, so the pre-filter answers without parsing.
func BenchmarkGuardPrefiltered(b *testing.B) {
	g := newGuard()
	sql := []byte(`SELECT abalance FROM pgbench_accounts WHERE aid = 42;`)
	b.ReportAllocs()
	b.SetBytes(int64(len(sql)))
	for b.Loop() {
		if g.Check(sql).Refused {
			b.Fatal("refused")
		}
	}
}

// A statement that triggers the pre-filter, answered from the cache after the first parse.
func BenchmarkGuardCacheHit(b *testing.B) {
	g := newGuard()
	sql := []byte(`SELECT current_setting('app.current_tenant_id'), session_id FROM sessions WHERE id = $1`)
	g.Check(sql)
	b.ReportAllocs()
	for b.Loop() {
		if g.Check(sql).Refused {
			b.Fatal("refused")
		}
	}
	if s := g.Stats(); s.Parsed != 1 {
		b.Fatalf("stats %+v: the cache missed", s)
	}
}

// A text never seen before, every iteration: pre-filter, cache miss, parse, rules, cache insert.
func BenchmarkGuardMiss(b *testing.B) {
	g := newGuard()
	prefix := []byte(`SELECT current_setting('app.current_tenant_id'), balance FROM accounts WHERE id = `)
	buf := make([]byte, 0, len(prefix)+20)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		sql := strconv.AppendInt(append(buf[:0], prefix...), int64(i), 10)
		if g.Check(sql).Refused {
			b.Fatal("refused")
		}
	}
	if s := g.Stats(); s.CacheHits != 0 {
		b.Fatalf("stats %+v: a text was seen twice", s)
	}
}

// A fresh simple Query of five statements, as an ORM sends a unit of work.
func BenchmarkGuardMissMultiStatement(b *testing.B) {
	g := newGuard()
	head := []byte(`BEGIN; SET LOCAL statement_timeout = '5s'; ` +
		`UPDATE accounts SET balance = balance - 10 WHERE id = 7; ` +
		`INSERT INTO transfers (from_id, to_id, amount) VALUES (7, 9, `)
	tail := []byte(`) RETURNING id; COMMIT`)
	buf := make([]byte, 0, len(head)+len(tail)+20)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		sql := append(strconv.AppendInt(append(buf[:0], head...), int64(i), 10), tail...)
		if g.Check(sql).Refused {
			b.Fatal("refused")
		}
	}
	if s := g.Stats(); s.CacheHits != 0 {
		b.Fatalf("stats %+v: a text was seen twice", s)
	}
}
