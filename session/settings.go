package session

import (
	"maps"
	"slices"
	"strings"

	"github.com/tenantproxy/tenantproxy/internal/guc"
)

// Settings are a client's tracked settings (name to value, by the server's names), with a key
// that stands for all of them: a checkout compares keys instead of walking maps, so when the
// backend already holds the client's tenant and settings it costs nothing.
type Settings struct {
	values   map[string]string
	key      string
	parseKey string
}

// NewSettings holds a copy of values.
func NewSettings(values map[string]string) *Settings {
	s := &Settings{values: maps.Clone(values)}
	if s.values == nil {
		s.values = map[string]string{}
	}
	s.rekey()
	return s
}

// Get returns a setting's value.
func (s *Settings) Get(name string) (string, bool) {
	v, ok := s.values[name]
	return v, ok
}

// Delete forgets a setting: the client has the session's default.
func (s *Settings) Delete(name string) {
	if _, ok := s.values[name]; ok {
		delete(s.values, name)
		s.rekey()
	}
}

// Set changes a setting (a no-op when it already has value).
func (s *Settings) Set(name, value string) {
	if old, ok := s.values[name]; ok && old == value {
		return
	}
	s.values[name] = value
	s.rekey()
}

// ParseKey stands for the settings that change what a statement means once parsed (see
// guc.Setting.Parse): the server turns literals into values as it parses (a date under DateStyle,
// a timestamp under TimeZone, a regclass under search_path), and a prepared statement keeps them;
// the text itself is read in client_encoding.
func (s *Settings) ParseKey() string { return s.parseKey }

// Clone is an independent copy.
func (s *Settings) Clone() *Settings { return NewSettings(s.values) }

// Names are the settings' names, sorted.
func (s *Settings) Names() []string { return slices.Sorted(maps.Keys(s.values)) }

func (s *Settings) rekey() {
	var b strings.Builder
	b.WriteByte('#') // never empty, so "" can mean "unknown" on a backend
	for _, name := range s.Names() {
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(s.values[name])
		b.WriteByte(0)
	}
	s.key = b.String()
	b.Reset()
	for _, name := range s.Names() {
		if setting, _ := guc.Lookup(name); setting.Parse {
			b.WriteString(name)
			b.WriteByte('=')
			b.WriteString(s.values[name])
			b.WriteByte(0)
		}
	}
	s.parseKey = b.String()
}
