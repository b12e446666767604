// Package guc is the one table of what the proxy knows about PostgreSQL's run-time settings
// (GUCs): which change what a statement means once parsed, which change how the server reads a
// text, which are the session's identity or the server's own facts, and which are lists of
// identifiers. Startup handling, the SQL guard, the pool and the prepared-statement key all
// derive what they need from it.
package guc

import "strings"

// Setting is what the proxy knows about one setting. A client may choose any setting it is
// allowed to (at startup, with SET, with set_config) but for Identity, a Lexer value the guard
// cannot read alike, the reserved namespace of the tenant context (configured), and what the
// server itself refuses; the proxy carries its choice to whichever backend serves it.
type Setting struct {
	// Name is the server's spelling (TimeZone, not timezone).
	Name string
	// Parse: the server folds values under it into a statement as it parses (a date literal
	// under DateStyle, a regclass under search_path), so a prepared statement is shared only by
	// clients that agree on it. A setting the table does not know is taken to have it.
	Parse bool
	// Lexer: it changes how the server splits a text into tokens; only values the guard reads
	// the same way are allowed (see LexerValueSafe).
	Lexer bool
	// Identity: it changes who the session is; never a client's to change.
	Identity bool
	// ReadOnly: a fact of the server's (server_version), reported but never set.
	ReadOnly bool
	// ListQuote: a list of identifiers (search_path), which SET takes as a list: a value the
	// server shows is applied as it is written, not as one quoted string.
	ListQuote bool
}

var table = []Setting{
	// What statements mean once parsed.
	{Name: "client_encoding", Parse: true, Lexer: true},
	{Name: "standard_conforming_strings", Parse: true, Lexer: true},
	{Name: "DateStyle", Parse: true},
	{Name: "IntervalStyle", Parse: true},
	{Name: "TimeZone", Parse: true},
	{Name: "timezone_abbreviations", Parse: true},
	{Name: "search_path", Parse: true, ListQuote: true},
	{Name: "transform_null_equals", Parse: true},
	{Name: "array_nulls", Parse: true},
	{Name: "xmloption", Parse: true},
	{Name: "backslash_quote", Parse: true},
	{Name: "lc_monetary", Parse: true},
	{Name: "lc_numeric", Parse: true},
	{Name: "lc_time", Parse: true},

	// What drivers, ORMs and tools commonly set, which leaves statements as they parse.
	{Name: "application_name"},
	{Name: "extra_float_digits"},
	{Name: "client_min_messages"},
	{Name: "statement_timeout"},
	{Name: "lock_timeout"},
	{Name: "idle_in_transaction_session_timeout"},
	{Name: "idle_session_timeout"},
	{Name: "default_transaction_isolation"},
	{Name: "default_transaction_read_only"},
	{Name: "default_transaction_deferrable"},
	{Name: "bytea_output"},
	{Name: "quote_all_identifiers"},
	{Name: "synchronize_seqscans"},
	{Name: "row_security"},
	{Name: "work_mem"},
	{Name: "maintenance_work_mem"},
	{Name: "temp_buffers"},
	{Name: "jit"},
	{Name: "plan_cache_mode"},
	{Name: "random_page_cost"},
	{Name: "seq_page_cost"},
	{Name: "effective_cache_size"},
	{Name: "join_collapse_limit"},
	{Name: "from_collapse_limit"},
	{Name: "cursor_tuple_fraction"},
	{Name: "default_text_search_config"},
	{Name: "hnsw.ef_search"},
	{Name: "hnsw.iterative_scan"},
	{Name: "hnsw.max_scan_tuples"},
	{Name: "ivfflat.probes"},
	{Name: "ivfflat.iterative_scan"},
	{Name: "temp_tablespaces", ListQuote: true},
	{Name: "local_preload_libraries", ListQuote: true},
	{Name: "session_preload_libraries", ListQuote: true},

	// Who the session is.
	{Name: "role", Identity: true},
	{Name: "session_authorization", Identity: true, ReadOnly: true},
	{Name: "is_superuser", ReadOnly: true},

	// Facts of the server.
	{Name: "server_version", ReadOnly: true},
	{Name: "server_version_num", ReadOnly: true},
	{Name: "server_encoding", ReadOnly: true},
	{Name: "integer_datetimes", ReadOnly: true},
	{Name: "in_hot_standby", ReadOnly: true},
	{Name: "lc_collate", ReadOnly: true},
	{Name: "lc_ctype", ReadOnly: true},
}

var byLowerName = func() map[string]Setting {
	m := make(map[string]Setting, len(table))
	for _, s := range table {
		m[Fold(s.Name)] = s
	}
	return m
}()

// Lookup finds a setting by name in any case. An unknown setting comes back with its name
// folded as the server folds it, taken to matter to parsing; the planner's enable_* switches
// are known not to.
func Lookup(name string) (Setting, bool) {
	folded := Fold(name)
	if s, ok := byLowerName[folded]; ok {
		return s, true
	}
	if strings.HasPrefix(folded, "enable_") {
		return Setting{Name: folded}, true
	}
	return Setting{Name: folded, Parse: true}, false
}

// Fold lower-cases the ASCII letters of a name only, as PostgreSQL compares setting names (and
// folds unquoted identifiers): no other character is ever equal to an ASCII one.
func Fold(name string) string {
	for i := 0; i < len(name); i++ {
		if 'A' <= name[i] && name[i] <= 'Z' {
			b := []byte(name)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return name
}

// LexerValueSafe reports whether a lexer setting's value leaves the server reading statements
// as the guard does: standard_conforming_strings on, and a client encoding whose bytes below
// 0x80 are always ASCII.
func LexerValueSafe(name, value string) bool {
	switch Fold(name) {
	case "standard_conforming_strings":
		return trueWords[Fold(value)]
	case "client_encoding":
		return SafeClientEncoding(value)
	}
	return true
}

// trueWords are the spellings PostgreSQL reads as a true boolean setting.
var trueWords = map[string]bool{"on": true, "true": true, "tru": true, "tr": true, "t": true, "yes": true, "ye": true, "y": true, "1": true}

// SafeClientEncoding reports whether the guard reads texts in the named client encoding as the
// server does: not SJIS, SHIFT_JIS_2004, BIG5, GBK, UHC, GB18030 or JOHAB, whose characters may
// end with a byte that looks like a quote or a backslash. The proxy must not open a backend
// with any other (a client's startup parameter included).
func SafeClientEncoding(name string) bool { return asciiSafeEncodings[CleanEncodingName(name)] }

// asciiSafeEncodings are PostgreSQL's encoding names (cleaned as CleanEncodingName does)
// whose characters never contain a byte below 0x80 other than ASCII characters: every
// encoding except the client-only SJIS, SHIFT_JIS_2004, BIG5, GBK, UHC, GB18030 and JOHAB.
var asciiSafeEncodings = func() map[string]bool {
	m := map[string]bool{}
	for _, name := range strings.Fields(`utf8 unicode sqlascii muleinternal
		euccn eucjis2004 eucjp euckr euctw
		latin1 latin2 latin3 latin4 latin5 latin6 latin7 latin8 latin9 latin10
		iso88591 iso88592 iso88593 iso88594 iso88595 iso88596 iso88597 iso88598
		iso88599 iso885910 iso885913 iso885914 iso885915 iso885916
		koi8 koi8r koi8u
		win win866 win874 win1250 win1251 win1252 win1253 win1254 win1255 win1256 win1257 win1258
		windows866 windows874 windows1250 windows1251 windows1252 windows1253
		windows1254 windows1255 windows1256 windows1257 windows1258
		alt abc tcvn tcvn5712 vscii`) {
		m[name] = true
	}
	return m
}()

// CleanEncodingName keeps the ASCII letters and digits of name, lower-cased, as PostgreSQL does
// before looking an encoding up ('UTF-8', "utf8" and 'utf-8' with its quotes are one encoding).
// A name with other non-ASCII bytes matches nothing.
func CleanEncodingName(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 0x80:
			return ""
		case 'A' <= c && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
			b.WriteByte(c)
		}
	}
	return b.String()
}

// ValidIdentifierList reports whether v is a list of identifiers as the server shows one
// ("$user", public): names, possibly double-quoted, separated by commas. Only such a value is
// written into a SET as it is.
func ValidIdentifierList(v string) bool {
	v = strings.TrimSpace(v)
	if v == "" || v == `""` {
		return true
	}
	for _, item := range splitIdentifierList(v) {
		item = strings.TrimSpace(item)
		switch {
		case len(item) >= 2 && item[0] == '"' && item[len(item)-1] == '"':
			if strings.Contains(strings.ReplaceAll(item[1:len(item)-1], `""`, ""), `"`) {
				return false
			}
		case item == "" || !plainIdentifier(item):
			return false
		}
	}
	return true
}

// splitIdentifierList splits on commas outside double quotes.
func splitIdentifierList(v string) []string {
	var items []string
	quoted, start := false, 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				items = append(items, v[start:i])
				start = i + 1
			}
		}
	}
	return append(items, v[start:])
}

func plainIdentifier(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c == '_' || c == '$' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c >= 0x80 || i > 0 && '0' <= c && c <= '9'
		if !ok {
			return false
		}
	}
	return true
}
