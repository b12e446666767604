package directory

import (
	"context"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
	"github.com/tenantproxy/tenantproxy/internal/scramsecret"
)

// benchUsers is the directory's size in BenchmarkLookup.
const benchUsers = 100_000

// BenchmarkLookup looks up random users of a directory of 100,000:
//
//	cold: nothing cached, so one primary-key lookup on the directory database each time;
//	warm: every user cached;
//	and both again from many goroutines at once (-cpu sets how many run in parallel).
//
// go test -run '^$' -bench Lookup ./directory/
func BenchmarkLookup(b *testing.B) {
	ctx := context.Background()
	db := pgtest.New(b)
	admin := pgtest.Connect(b, db.AdminURL)
	verifier, err := scramsecret.New("bench")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := admin.Exec(ctx, `INSERT INTO tenantproxy_directory.users (name, verifier, tenant)
		SELECT 'user' || i, $1, 'tenant' || (i % 1000) FROM generate_series(1, $2::int) i`, verifier, benchUsers); err != nil {
		b.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "ANALYZE tenantproxy_directory.users"); err != nil {
		b.Fatal(err)
	}
	names := make([]string, benchUsers)
	for i := range names {
		names[i] = "user" + strconv.Itoa(i+1)
	}
	d, err := Open(ctx, db.DirectoryURL, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()

	lookup := func(b *testing.B, name string) {
		u, found, err := d.Lookup(ctx, name)
		if err != nil || !found || u.Name != name {
			b.Fatalf("lookup %s: %+v %v %v", name, u, found, err)
		}
	}
	warmUp := func(b *testing.B) {
		users, err := List(ctx, admin)
		if err != nil || len(users) != benchUsers {
			b.Fatalf("listing: %d users, %v", len(users), err)
		}
		for _, u := range users {
			d.cache.put(u.Name, u, true, d.cache.generation())
		}
	}

	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			d.cache.flush()
			lookup(b, names[rand.IntN(benchUsers)])
		}
	})
	b.Run("warm", func(b *testing.B) {
		warmUp(b)
		b.ResetTimer()
		for b.Loop() {
			lookup(b, names[rand.IntN(benchUsers)])
		}
	})
	b.Run("cold-parallel", func(b *testing.B) {
		d.cache.flush()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				// Mostly uncached: each name comes up about b.N/100,000 times.
				lookup(b, names[rand.IntN(benchUsers)])
			}
		})
	})
	b.Run("warm-parallel", func(b *testing.B) {
		warmUp(b)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				lookup(b, names[rand.IntN(benchUsers)])
			}
		})
	})
}
