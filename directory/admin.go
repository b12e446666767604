package directory

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The functions below run on an admin connection: a superuser, or a role granted INSERT, UPDATE,
// DELETE and SELECT on tenantproxy_directory.users. The table's trigger logs every change for
// the proxies to see.

var (
	// ErrExists is returned by Add when the name is taken.
	ErrExists = errors.New("already exists")
	// ErrNoUser is returned when the named user is not in the directory.
	ErrNoUser = errors.New("no such user")
)

// Add creates u, after checking it with Validate and its verifier.
func Add(ctx context.Context, conn *pgx.Conn, u User) error {
	if err := errors.Join(u.Validate(), validVerifier(u.Verifier)); err != nil {
		return err
	}
	_, err := conn.Exec(ctx, `INSERT INTO `+users+`
		(name, verifier, tenant, tenants, default_tenant, max_connections, disabled)
		VALUES ($1, $2, nullif($3, ''), $4, nullif($5, ''), nullif($6, 0), $7)`,
		u.Name, u.Verifier, u.Tenant, u.Tenants, u.DefaultTenant, int32(u.MaxConnections), u.Disabled)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return fmt.Errorf("user %q: %w", u.Name, ErrExists)
	}
	return explainWrite(err)
}

// Remove deletes the user called name.
func Remove(ctx context.Context, conn *pgx.Conn, name string) error {
	return changeOne(ctx, conn, name, `DELETE FROM `+users+` WHERE name = $1`)
}

// SetVerifier replaces the user's SCRAM-SHA-256 verifier (a new password).
func SetVerifier(ctx context.Context, conn *pgx.Conn, name, verifier string) error {
	if err := validVerifier(verifier); err != nil {
		return err
	}
	return changeOne(ctx, conn, name, `UPDATE `+users+` SET verifier = $2, updated_at = now() WHERE name = $1`, verifier)
}

// SetTenants replaces the user's tenants: one (tenant), or a choice (tenants) with an optional
// default, checked as Validate checks them.
func SetTenants(ctx context.Context, conn *pgx.Conn, name, tenant string, tenants []string, defaultTenant string) error {
	u := User{Name: name, Tenant: tenant, Tenants: tenants, DefaultTenant: defaultTenant}
	if err := u.Validate(); err != nil {
		return err
	}
	return changeOne(ctx, conn, name, `UPDATE `+users+` SET tenant = nullif($2, ''), tenants = $3,
		default_tenant = nullif($4, ''), updated_at = now() WHERE name = $1`, tenant, tenants, defaultTenant)
}

// SetMaxConnections sets the user's own cap on client connections; 0 removes it.
func SetMaxConnections(ctx context.Context, conn *pgx.Conn, name string, maxConnections int) error {
	if err := validMaxConnections(maxConnections); err != nil {
		return err
	}
	return changeOne(ctx, conn, name, `UPDATE `+users+` SET max_connections = nullif($2, 0), updated_at = now() WHERE name = $1`,
		int32(maxConnections))
}

// SetDisabled disables the user (refused at login, sessions closed) or enables it again.
func SetDisabled(ctx context.Context, conn *pgx.Conn, name string, disabled bool) error {
	return changeOne(ctx, conn, name, `UPDATE `+users+` SET disabled = $2, updated_at = now() WHERE name = $1`, disabled)
}

// Get returns the user called name, and whether there is one, straight from the database.
func Get(ctx context.Context, conn *pgx.Conn, name string) (User, bool, error) {
	u, err := scanUser(conn.QueryRow(ctx, lookupQuery+` WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, false, nil
	}
	return u, err == nil, explainWrite(err)
}

// List returns every user, by name.
func List(ctx context.Context, conn *pgx.Conn) ([]User, error) {
	rows, err := conn.Query(ctx, lookupQuery+` ORDER BY name`)
	if err != nil {
		return nil, explainWrite(err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (User, error) { return scanUser(row) })
	return list, explainWrite(err)
}

// changeOne runs a statement that changes the user called name, which must exist.
func changeOne(ctx context.Context, conn *pgx.Conn, name, sql string, args ...any) error {
	tag, err := conn.Exec(ctx, sql, append([]any{name}, args...)...)
	if err != nil {
		return explainWrite(err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("user %q: %w", name, ErrNoUser)
	}
	return nil
}

// explainWrite turns the errors of a directory that cannot be written into advice.
func explainWrite(err error) error {
	var pgErr *pgconn.PgError
	if err == nil || !errors.As(err, &pgErr) {
		return err
	}
	switch pgErr.Code {
	case "42P01", "3F000":
		return fmt.Errorf("this database has no tenant directory (run tenantproxy migrate up): %w", err)
	case "42501":
		return fmt.Errorf("the tenant directory is written with a superuser URL: %w", err)
	}
	return err
}
