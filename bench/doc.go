// Package bench measures tenantproxy: the cost of each path through the SQL guard, and of the
// proxy's other hot paths, as Go benchmarks (go test -run x -bench . -benchmem ./bench/). The
// proxy benchmarks (a query through an in-process proxy against the same query straight to
// PostgreSQL, a tenant switch, a large result) need a real PostgreSQL, which TestMain gets from
// pgtest, so the whole package runs with one.
//
// The command bench/cmd/bench compares tenantproxy with PostgreSQL and PgBouncer as separate
// processes on one machine (pgbench throughput and proxy CPU, latency, threads, idle clients,
// fair share between tenants, memory a tenant can make the proxy hold, RLS overhead, recall,
// isolation) and writes a Markdown report with SVG charts under results/<UTC timestamp>/.
package bench
