// Package guc is the one table of what the proxy knows about PostgreSQL's run-time settings
// (GUCs): which a client may choose, which the proxy must follow from backend to backend, which
// change what a statement means once parsed, and which change how the server reads a text.
// Startup handling, the SQL guard, the pool and the prepared-statement key all derive what they
// need from it.
package guc

import "strings"

// Setting is what the proxy knows about one setting.
type Setting struct {
	// Name is the server's spelling (TimeZone, not timezone).
	Name string
	// Startup: a client may choose it in its startup packet.
	Startup bool
	// Tracked: a client may change it at session level in transaction pooling; the server
	// reports it (ParameterStatus), so the proxy follows the client's value and puts it in place
	// on whichever backend serves the client next.
	Tracked bool
	// Parse: the server folds values under it into a statement as it parses (a date literal
	// under DateStyle), so a prepared statement is shared only by clients that agree on it.
	Parse bool
	// Lexer: it changes how the server splits a text into tokens; only values the guard reads
	// the same way are allowed (see LexerValueSafe).
	Lexer bool
	// Identity: it changes who the session is; never a client's to change.
	Identity bool
}

var table = []Setting{
	{Name: "application_name", Startup: true, Tracked: true},
	{Name: "client_encoding", Startup: true, Tracked: true, Parse: true, Lexer: true},
	{Name: "DateStyle", Startup: true, Tracked: true, Parse: true},
	{Name: "IntervalStyle", Startup: true, Tracked: true, Parse: true},
	{Name: "TimeZone", Startup: true, Tracked: true, Parse: true},
	{Name: "extra_float_digits", Startup: true},
	{Name: "search_path", Startup: true},
	{Name: "standard_conforming_strings", Tracked: true, Lexer: true},
	{Name: "default_transaction_read_only", Tracked: true},
	{Name: "role", Identity: true},
	{Name: "session_authorization", Identity: true},
}

var byLowerName = func() map[string]Setting {
	m := make(map[string]Setting, len(table))
	for _, s := range table {
		m[Fold(s.Name)] = s
	}
	return m
}()

// Lookup finds a setting by name in any case. An unknown setting comes back with its name as
// given and no flags.
func Lookup(name string) (Setting, bool) {
	s, ok := byLowerName[Fold(name)]
	if !ok {
		return Setting{Name: name}, false
	}
	return s, true
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

// Names lists the settings that have a flag, in the table's order.
func Names(flag func(Setting) bool) []string {
	var names []string
	for _, s := range table {
		if flag(s) {
			names = append(names, s.Name)
		}
	}
	return names
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
