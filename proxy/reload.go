package proxy

import (
	"errors"
	"runtime"

	"github.com/rs/zerolog"

	"github.com/tenantproxy/tenantproxy/config"
)

// ReloadFile reads the configuration file again and applies it (Reload), as SIGHUP and the
// console's RELOAD do. A file that does not load changes nothing. The outcome is logged.
func (s *Server) ReloadFile() (kept []string, err error) {
	file := s.Config().File()
	if file == "" {
		err = errors.New("the configuration was not read from a file")
	} else {
		var next *config.Config
		if next, err = config.Load(file); err == nil {
			kept, err = s.Reload(next)
		}
	}
	if err != nil {
		s.log.Error().Err(err).Str("file", file).Msg("configuration not reloaded: the running one is kept")
		return nil, err
	}
	s.log.Info().Str("file", file).Msg("configuration reloaded")
	if len(kept) > 0 {
		s.log.Warn().Strs("keys", kept).Msg("the file changes keys that need a restart: they keep their old values")
	}
	return kept, nil
}

// Reload puts next in force without dropping a connection: users and admins, tenants and
// limits, timeouts, TLS files, the log level (zerolog's global level) and threads. It keeps the
// running values of the keys that need a restart (config.KeepRestartOnly) and returns them.
// New logins see the new configuration; logged-in clients keep their tenant's time limits until
// they reconnect, but lose their session at once when their user may no longer act for their
// tenant. On an error (a TLS file that does not load) nothing changes.
func (s *Server) Reload(next *config.Config) (kept []string, err error) {
	s.reloading.Lock()
	defer s.reloading.Unlock()
	running := s.Config()
	kept = next.KeepRestartOnly(running)
	tlsConfig, err := loadTLS(next.TLS)
	if err != nil {
		return nil, err
	}
	if err := s.accounts.Reload(next); err != nil {
		return nil, err
	}
	s.tls.Store(tlsConfig)
	s.config.Store(next)
	if next.Log.Level != running.Log.Level {
		level, _ := zerolog.ParseLevel(next.Log.Level)
		zerolog.SetGlobalLevel(level)
	}
	if next.Threads != running.Threads {
		SetThreads(next.Threads)
	}
	s.pool.Reweigh()
	s.recheckUsers(nil)
	return kept, nil
}

// SetThreads sets how many OS threads run Go code at once (GOMAXPROCS); 0 gives Go's default.
func SetThreads(threads int) {
	if threads > 0 {
		runtime.GOMAXPROCS(threads)
		return
	}
	runtime.SetDefaultGOMAXPROCS()
}
