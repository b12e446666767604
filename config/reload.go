package config

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// A running proxy reloads its file on SIGHUP or the console's RELOAD. Most keys take effect at
// once (users, admins, tenants, limits, timeouts, TLS files, the log level); the keys below
// shape what was built at start (the listener, the pool, the guard, the directory connection)
// and keep their old values until a restart.
var restartOnly = []struct {
	key   string
	value func(*Config) any // a pointer to the key's value
}{
	{"listen", func(c *Config) any { return &c.Listen }},
	{"metrics_listen", func(c *Config) any { return &c.MetricsListen }},
	{"so_reuseport", func(c *Config) any { return &c.ReusePort }},
	{"peer_id", func(c *Config) any { return &c.PeerID }},
	{"peers", func(c *Config) any { return &c.Peers }},
	{"backend", func(c *Config) any { return &c.Backend }},
	{"pool", func(c *Config) any { return &c.Pool }},
	{"limits.guard_memory", func(c *Config) any { return &c.Limits.GuardMemory }},
	{"limits.message_memory", func(c *Config) any { return &c.Limits.MessageMemory }},
	{"limits.prepared_statement_memory", func(c *Config) any { return &c.Limits.StatementMemory }},
	{"tenancy.setting", func(c *Config) any { return &c.Tenancy.Setting }},
	{"tenancy.reserved_prefixes", func(c *Config) any { return &c.Tenancy.ReservedPrefixes }},
	{"tenancy.schemas", func(c *Config) any { return &c.Tenancy.Schemas }},
	{"directory", func(c *Config) any { return &c.Directory }},
	{"log.format", func(c *Config) any { return &c.Log.Format }},
}

// KeepRestartOnly gives next, a configuration about to replace running, running's values of
// the keys that cannot change without a restart, and returns the keys next would have changed
// (each key of a section, such as pool.size).
func (next *Config) KeepRestartOnly(running *Config) (kept []string) {
	for _, k := range restartOnly {
		nv, rv := reflect.ValueOf(k.value(next)).Elem(), reflect.ValueOf(k.value(running)).Elem()
		if changed := differences(k.key, nv, rv); len(changed) > 0 {
			kept = append(kept, changed...)
			nv.Set(rv)
		}
	}
	return kept
}

// differences names the keys under key where a and b differ: the fields of a section one by
// one, the key itself for anything else.
func differences(key string, a, b reflect.Value) []string {
	if reflect.DeepEqual(a.Interface(), b.Interface()) {
		return nil
	}
	if a.Kind() == reflect.Pointer && !a.IsNil() && !b.IsNil() {
		a, b = a.Elem(), b.Elem()
	}
	if a.Kind() != reflect.Struct || a.Type().Field(0).Anonymous {
		return []string{key}
	}
	var out []string
	for i := range a.NumField() {
		name, _, _ := strings.Cut(a.Type().Field(i).Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		out = append(out, differences(key+"."+name, a.Field(i), b.Field(i))...)
	}
	if len(out) == 0 {
		return []string{key}
	}
	return out
}

// Setting is one key of a configuration as the console shows it.
type Setting struct {
	Key, Value string
	// Live: a reload changes it without a restart.
	Live bool
}

// Settings lists every key of c with its value in TOML, secrets masked: passwords and
// verifiers show as "****". Users and admins are shown by name only.
func (c *Config) Settings() []Setting {
	var buf bytes.Buffer
	shown := *c
	shown.Users, shown.Admins = nil, nil
	if err := toml.NewEncoder(&buf).Encode(shown); err != nil {
		return []Setting{{Key: "error", Value: err.Error()}}
	}
	var tree map[string]any
	if _, err := toml.Decode(buf.String(), &tree); err != nil {
		return []Setting{{Key: "error", Value: err.Error()}}
	}
	var out []Setting
	flatten("", tree, &out)
	for _, section := range []struct {
		key   string
		names []string
	}{{"users", sortedKeys(c.Users)}, {"admins", sortedKeys(c.Admins)}} {
		out = append(out, Setting{Key: section.key, Value: strings.Join(section.names, ", "), Live: true})
	}
	slices.SortFunc(out, func(a, b Setting) int { return strings.Compare(a.Key, b.Key) })
	return out
}

func flatten(prefix string, tree map[string]any, out *[]Setting) {
	for key, v := range tree {
		if prefix != "" {
			key = prefix + "." + key
		}
		if sub, ok := v.(map[string]any); ok {
			flatten(key, sub, out)
			continue
		}
		value := tomlValue(v)
		if strings.HasSuffix(key, "password") && value != `""` {
			value = "****"
		}
		*out = append(*out, Setting{Key: key, Value: value, Live: live(key)})
	}
}

// tomlValue writes one value as it would appear in the file.
func tomlValue(v any) string {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(map[string]any{"v": v}); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimPrefix(strings.TrimSpace(buf.String()), "v = ")
}

func live(key string) bool {
	for _, k := range restartOnly {
		if key == k.key || strings.HasPrefix(key, k.key+".") {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
