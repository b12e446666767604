// Package directory is the tenant directory: the proxy's users kept in the database, so that
// adding, changing, disabling or removing one takes effect on every running proxy within seconds.
//
// The directory lives in the tenantproxy_directory schema that `tenantproxy migrate up` creates:
// users (one row per user) and user_changes (a change log a trigger keeps). The proxy reads it as
// the directory role, which can read those two tables and nothing else; the app role cannot read
// them at all.
//
// Reading (the proxy): Open, then Lookup at each login. Answers are cached, unknown names too.
// Every instance polls the change log each Refresh interval, drops the cached answers of the
// names it lists, and reports those names on Changes(), so the proxy can close the sessions of a
// user removed or disabled. The proxy's part:
//
//	// at start, when cfg.Directory != nil
//	dir, err := directory.OpenConfig(ctx, cfg.Directory, log)
//
//	// at each login of a name that is not in cfg.Users (the file's users win)
//	u, found, err := dir.Lookup(ctx, name)
//	switch {
//	case err != nil:             // FATAL: the tenant directory cannot be reached
//	case !found || u.Disabled:   // the same failure as a wrong password
//	default:                     // scramsecret.Parse(u.Verifier); the tenant from u.Tenant, or
//	}                            // u.Tenants and u.DefaultTenant; u.MaxConnections if > 0
//
//	// one goroutine, until dir.Close closes the channel
//	for name := range dir.Changes() {
//		u, found, err := dir.Lookup(ctx, name)
//		if err == nil && (!found || u.Disabled) { /* close name's client sessions */ }
//	}
//
// Writing (the commands): Add, Remove, SetVerifier, SetTenants, SetMaxConnections, SetDisabled and
// List, on an admin connection.
package directory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/migrations"
)

// User is one user of the directory.
type User struct {
	Name string
	// Verifier is a SCRAM-SHA-256 verifier (internal/scramsecret); no password is stored.
	Verifier string
	// Tenant is the user's only tenant; "" when the user chooses among Tenants.
	Tenant string
	// Tenants are the tenants the client may pick from, when Tenant is "".
	Tenants []string
	// DefaultTenant, with Tenants, is used when the client picks none ("": it must pick).
	DefaultTenant string
	// MaxConnections caps the user's client connections; 0 means no override.
	MaxConnections int
	// Disabled users are kept but must be refused at login, like an unknown user.
	Disabled bool
}

func (u User) clone() User {
	u.Tenants = slices.Clone(u.Tenants)
	return u
}

// Options tune a Directory. The zero value takes every default.
type Options struct {
	// Password for the directory role, when not in the connection string (where it could be
	// logged) nor in a passfile.
	Password string
	// Refresh is how often the change log is read: a change reaches new logins within about
	// this long. Default 2s.
	Refresh time.Duration
	// Timeout bounds each query to the directory. Default 5s.
	Timeout time.Duration
	// MaxConns is the most connections to the directory at once. Default 4.
	MaxConns int32
	// MaxUnknown is how many unknown names are cached at most; past it they are all forgotten,
	// so clients trying random names cannot grow the cache. Default 10,000.
	MaxUnknown int
	// Log receives a warning when the change log cannot be read, and a note when it can again.
	// The zero Logger logs nothing.
	Log zerolog.Logger
}

func (o Options) withDefaults() Options {
	if o.Refresh <= 0 {
		o.Refresh = config.DefaultDirectoryRefresh
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 4
	}
	if o.MaxUnknown <= 0 {
		o.MaxUnknown = 10_000
	}
	return o
}

// Directory answers who a user is. It is safe for concurrent use.
type Directory struct {
	pool    *pgxpool.Pool
	opts    Options
	cache   *cache
	changed *queue
	changes chan string
	stop    context.CancelFunc
	running sync.WaitGroup
}

// Open connects to the directory as the directory role (connString is a URL or keyword/value
// string, as libpq takes) and starts watching its change log. It fails when the directory cannot
// be read: unreachable, not migrated, or a role that may not read it.
func Open(ctx context.Context, connString string, opts Options) (*Directory, error) {
	opts = opts.withDefaults()
	pc, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("tenant directory: %w", err)
	}
	if opts.Password != "" {
		pc.ConnConfig.Password = opts.Password
	}
	pc.MaxConns = opts.MaxConns
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("tenant directory: %w", err)
	}
	qctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	// What is cached from here on is invalidated by changes after this version.
	var head int64
	if err := pool.QueryRow(qctx, headQuery).Scan(&head); err != nil {
		pool.Close()
		return nil, explain(err)
	}

	watchCtx, stop := context.WithCancel(context.Background())
	d := &Directory{
		pool:    pool,
		opts:    opts,
		cache:   newCache(opts.MaxUnknown),
		changed: newQueue(),
		changes: make(chan string),
		stop:    stop,
	}
	d.running.Add(2)
	go func() { defer d.running.Done(); d.watch(watchCtx, head) }()
	go func() { defer d.running.Done(); d.forward(watchCtx) }()
	return d, nil
}

// OpenConfig opens the directory a configuration's [directory] section names.
func OpenConfig(ctx context.Context, c *config.Directory, log zerolog.Logger) (*Directory, error) {
	return Open(ctx, c.DSN(), Options{Password: c.Password, Refresh: c.Refresh.Duration, Log: log})
}

// Lookup returns the user called name, and whether there is one. A disabled user is returned
// with Disabled set: the caller must refuse it. Answers come from the cache when it has them
// (including "no such user"); otherwise from one primary-key lookup. An error means the directory
// could not be asked: the login should fail, saying so.
//
// While the directory database is unreachable, cached answers keep being served, and so may be
// stale by up to the length of the outage; names not cached get an error.
func (d *Directory) Lookup(ctx context.Context, name string) (User, bool, error) {
	if u, found, hit := d.cache.get(name); hit {
		return u.clone(), found, nil
	}
	// Only valid names are cached, so this check costs nothing to a cached answer.
	if !config.ValidUser(name) {
		return User{}, false, nil
	}
	generation := d.cache.generation()
	u, found, err := d.fetch(ctx, name)
	if err != nil {
		return User{}, false, err
	}
	d.cache.put(name, u, found, generation)
	return u.clone(), found, nil
}

// Changes reports the name of each user added, changed, disabled or removed, as this instance's
// watcher reads them from the change log (within about Refresh of the change). A name changed
// several times before it is received is reported once. When the watcher has lost track (it fell
// more than a day behind, or the log was restored to an earlier state) it reports every name it
// had cached. Look the name up again to see what changed. The channel is closed by Close.
func (d *Directory) Changes() <-chan string { return d.changes }

// Close stops watching and closes the connections and the Changes channel.
func (d *Directory) Close() {
	d.stop()
	d.running.Wait()
	d.pool.Close()
}

var (
	users       = pgx.Identifier{migrations.DirectorySchema, "users"}.Sanitize()
	userChanges = pgx.Identifier{migrations.DirectorySchema, "user_changes"}.Sanitize()

	lookupQuery = `SELECT name, verifier, coalesce(tenant, ''), coalesce(tenants, '{}'), coalesce(default_tenant, ''),
		coalesce(max_connections, 0), disabled FROM ` + users
	headQuery = `SELECT coalesce(max(version), 0) FROM ` + userChanges
)

func (d *Directory) fetch(ctx context.Context, name string) (User, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	u, err := scanUser(d.pool.QueryRow(ctx, lookupQuery+` WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, false, nil
	}
	if err != nil {
		return User{}, false, explain(err)
	}
	return u, true, nil
}

func scanUser(row pgx.Row) (User, error) {
	var u User
	var maxConnections int32
	err := row.Scan(&u.Name, &u.Verifier, &u.Tenant, &u.Tenants, &u.DefaultTenant, &maxConnections, &u.Disabled)
	u.MaxConnections = int(maxConnections)
	if len(u.Tenants) == 0 {
		u.Tenants = nil
	}
	return u, err
}

// explain turns the errors of a directory that cannot be read into advice.
func explain(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "42P01", "3F000":
			return fmt.Errorf("tenant directory: this database has none (run tenantproxy migrate up): %w", err)
		case "42501":
			return fmt.Errorf("tenant directory: the role may not read it (connect as %s): %w", migrations.DirectoryRole, err)
		}
	}
	return fmt.Errorf("tenant directory: %w", err)
}
