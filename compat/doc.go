// Package compat holds the compatibility suite: real PostgreSQL drivers and ORMs, each with its
// library's defaults, run one scenario straight against PostgreSQL and through tenantproxy in
// both pool modes (go test ./compat; docs/compatibility.md says what each client sends).
package compat
