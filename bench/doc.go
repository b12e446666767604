// Package bench measures tenantproxy: the cost of each path through the SQL guard, and of the
// proxy's other hot paths, as Go benchmarks (go test -run x -bench . -benchmem ./bench/).
package bench
