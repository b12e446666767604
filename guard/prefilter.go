package guard

import (
	"strings"

	"github.com/tenantproxy/tenantproxy/internal/guc"
	"github.com/tenantproxy/tenantproxy/lockdown"
)

// The pre-filter keeps most statements away from the parser. It looks for triggers in the raw
// bytes, strings and comments included: it never tries to tell a string or a comment from code,
// because a wrong guess there would be a bypass, while a trigger that means nothing (a column
// named "session_id", a 'set' in a string) only costs one parse, whose verdict is then cached.
//
// Why the triggers are enough: every construct the guard refuses, and every effect it reports,
// needs one of the keywords below or names one of the functions, relations or schemas below.
// Keywords cannot be quoted or escaped: PostgreSQL's lexer takes a keyword only from a bare word
// of ASCII letters (in any case). Names are identifiers, which may be quoted ("set_config"),
// leaving the substring in place, or spelled with Unicode escapes (U&"\0073et_config"), the one
// way to write a name without its letters, and "u&" is a trigger. String constants may be
// escaped at will (E'\x61pp.x'), but the rules that read strings (set_config's arguments, SET
// values) need set_config or SET to be there first.
//
// Rule by rule, what each needs:
//   - SET or RESET of a setting (reserved, identity, session-level, lexer settings, search_path
//     with pg_temp), RESET ALL: SET or RESET. A SET clause inside another statement only exists
//     in ALTER ROLE/DATABASE/SYSTEM/FUNCTION/PROCEDURE/ROUTINE and CREATE FUNCTION/PROCEDURE.
//   - every function of the database lockdown (lockdown.Functions), dblink*, lo_*, pg_ls_*,
//     the advisory locks, setseed, currval, lastval: their names.
//   - writes to pg_settings, and views over it: pg_settings.
//   - persistent settings, role DDL, code definitions: ALTER, CREATE, DROP, GRANT, REVOKE or
//     REASSIGN (GRANT r TO u, REVOKE r FROM u, DROP USER u and DROP OWNED BY u carry no other).
//   - EXPLAIN, DO, LOAD, COPY, LISTEN, UNLISTEN, NOTIFY, PREPARE (statements and transactions), EXECUTE,
//     DEALLOCATE, DISCARD, WITH HOLD, COMMIT/ROLLBACK PREPARED: their keywords.
//   - temporary objects: TEMP or TEMPORARY, or a pg_temp, pg_temp_N or pg_toast_temp_N schema
//     ("_temp").
//
// A word boundary is any byte the lexer does not continue an identifier with: not [A-Za-z0-9_$]
// and below 0x80 (it takes every byte from 0x80 up as a letter). A keyword glued to a digit or
// a '$' never parses: "1set" is "trailing junk after numeric literal", and in "$set" the '$'
// is a lone token that no rule accepts.
//
// SET and DO are the two keywords ordinary DML carries (UPDATE t SET, ON CONFLICT DO), so they
// only count where a statement can start, which is all a SET or DO statement can do: after the
// start of the text, a ';', the '/' that ends a comment or a line break (which may end a --
// comment), with nothing in between but spaces, tabs, form feeds and vertical tabs. Anything
// else before them is a token of the same statement, or the inside of a string or comment still
// open there. Inside another statement, DO (CREATE RULE ... DO) and a setting's SET (see above)
// come with CREATE or ALTER.

// prefilterKeywords are matched as whole words.
var prefilterKeywords = []string{
	"reset", "copy", "load", "listen", "unlisten", "notify", "prepare", "prepared", "execute", "deallocate", "explain",
	"discard", "hold", "temp", "temporary", "alter", "create",
	// role DDL that carries no other trigger
	"grant", "revoke", "drop", "reassign",
}

// prefilterStatementKeywords are matched as whole words that can start a statement.
var prefilterStatementKeywords = []string{"set", "do"}

// prefilterSubstrings are matched anywhere, because identifiers may be quoted.
var prefilterSubstrings = []string{
	"u&", "set_config", "pg_settings", "_to_xml", "xml", "ts_stat", "ts_rewrite", "dblink",
	"lo_", "loread", "lowrite", "pg_notify", "advisory", "currval", "lastval", "setseed", "backend",
	"pg_read", "pg_ls", "pg_stat", "role", "authorization", "session",
	// temporary schemas: pg_temp, pg_temp_3, pg_toast_temp_3
	"_temp",
	// a zero byte ends the text for libpg_query but not for Go: never let one through unparsed
	"\x00",
}

type triggerKind uint8

const (
	matchAnywhere triggerKind = iota
	matchWholeWord
	matchStatementStart
)

type prefilterTrigger struct {
	text string // lower case
	kind triggerKind
}

// prefilter holds the triggers by their first byte. To spend about one bit test on most
// positions of a text, it also keeps the set of the hashed first three bytes of the triggers
// (their letters folded to one case), and the two-byte and one-byte triggers exactly.
type prefilter struct {
	byFirst [256][]prefilterTrigger
	starts  [1 << 16 / 64]uint64   // bit startHash(c0, c1, c2): a trigger may start with c0 c1 c2
	pairs   [256 * 256 / 64]uint64 // bit c0<<8|c1: a two-byte trigger is c0 c1
	single  [256]bool              // a one-byte trigger is c0
}

func newPrefilter(reservedPrefixes []string) *prefilter {
	p := &prefilter{}
	add := func(text string, kind triggerKind) {
		text = guc.Fold(text)
		if text == "" {
			return
		}
		p.byFirst[text[0]] = append(p.byFirst[text[0]], prefilterTrigger{text, kind})
		switch len(text) {
		case 1:
			for _, c0 := range caseVariants(text[0]) {
				p.single[c0] = true
			}
		case 2:
			for _, c0 := range caseVariants(text[0]) {
				for _, c1 := range caseVariants(text[1]) {
					pair := int(c0)<<8 | int(c1)
					p.pairs[pair/64] |= 1 << (pair % 64)
				}
			}
		default:
			h := startHash(text[0], text[1], text[2])
			p.starts[h/64] |= 1 << (h % 64)
		}
	}
	for _, k := range prefilterKeywords {
		add(k, matchWholeWord)
	}
	for _, k := range prefilterStatementKeywords {
		add(k, matchStatementStart)
	}
	for _, s := range prefilterSubstrings {
		add(s, matchAnywhere)
	}
	// Every function the database lockdown revokes, which the rules refuse by name.
	for _, name := range lockdown.FunctionNames() {
		add(name, matchAnywhere)
	}
	// A reserved name may be written in any case and quoted piece by piece ("App"."X"), so
	// the namespace alone, without its dot, is the trigger.
	for _, prefix := range reservedPrefixes {
		add(strings.TrimSuffix(prefix, "."), matchAnywhere)
	}
	return p
}

func caseVariants(c byte) []byte {
	if 'a' <= c && c <= 'z' {
		return []byte{c, c - 'a' + 'A'}
	}
	return []byte{c}
}

// startHash hashes three bytes to 16 bits. Or-ing 0x20 folds ASCII letters to lower case; it
// merges some other bytes too, which only costs a look at the triggers.
func startHash(c0, c1, c2 byte) uint32 {
	x := uint32(c0|0x20)<<16 | uint32(c1|0x20)<<8 | uint32(c2|0x20)
	return (x * 0x9E3779B1) >> 16
}

// flags reports whether sql holds a trigger, so that it must be parsed.
func (p *prefilter) flags(sql []byte) bool {
	n := len(sql)
	i := 0
	for ; i+2 < n; i++ {
		c0, c1 := sql[i], sql[i+1]
		if p.single[c0] {
			return true
		}
		pair := int(c0)<<8 | int(c1)
		h := startHash(c0, c1, sql[i+2])
		if (p.pairs[pair/64]&(1<<(pair%64)) != 0 || p.starts[h/64]&(1<<(h%64)) != 0) && p.matchAt(sql, i) {
			return true
		}
	}
	for ; i < n; i++ { // the last two bytes: only one- and two-byte triggers fit
		if p.single[sql[i]] {
			return true
		}
		if i+1 < n {
			pair := int(sql[i])<<8 | int(sql[i+1])
			if p.pairs[pair/64]&(1<<(pair%64)) != 0 && p.matchAt(sql, i) {
				return true
			}
		}
	}
	return false
}

// matchAt reports whether a trigger matches at sql[i].
func (p *prefilter) matchAt(sql []byte, i int) bool {
	for _, t := range p.byFirst[lowerASCII[sql[i]]] {
		if !hasPrefixFold(sql[i:], t.text) {
			continue
		}
		switch t.kind {
		case matchAnywhere:
			return true
		case matchWholeWord:
			if isWholeWord(sql, i, len(t.text)) {
				return true
			}
		case matchStatementStart:
			if isWholeWord(sql, i, len(t.text)) && canStartStatement(sql, i) {
				return true
			}
		}
	}
	return false
}

// isWholeWord reports whether sql[i:i+n] is a whole word for PostgreSQL's lexer.
func isWholeWord(sql []byte, i, n int) bool {
	return (i == 0 || !identByte[sql[i-1]]) && (i+n == len(sql) || !identByte[sql[i+n]])
}

// canStartStatement reports whether a statement could start at sql[i]: what comes before,
// past blanks that do not end a line, is the start of the text, a ';', the '/' closing a
// comment, or a line break (\n or \r, the two that end a -- comment).
func canStartStatement(sql []byte, i int) bool {
	for j := i - 1; j >= 0; j-- {
		switch sql[j] {
		case ' ', '\t', '\f', '\v':
			continue
		case ';', '/', '\n', '\r':
			return true
		default:
			return false
		}
	}
	return true
}

// hasPrefixFold reports whether b starts with lower, comparing ASCII letters in any case.
func hasPrefixFold(b []byte, lower string) bool {
	if len(b) < len(lower) {
		return false
	}
	for i := 0; i < len(lower); i++ {
		if lowerASCII[b[i]] != lower[i] {
			return false
		}
	}
	return true
}

// lowerASCII folds A-Z only, as PostgreSQL does for keywords and unquoted names.
var lowerASCII = func() (t [256]byte) {
	for i := range t {
		t[i] = byte(i)
		if 'A' <= i && i <= 'Z' {
			t[i] = byte(i + 'a' - 'A')
		}
	}
	return t
}()

// identByte marks the bytes PostgreSQL's lexer continues an identifier with.
var identByte = func() (t [256]bool) {
	for i := range t {
		t[i] = 'a' <= i && i <= 'z' || 'A' <= i && i <= 'Z' || '0' <= i && i <= '9' ||
			i == '_' || i == '$' || i >= 0x80
	}
	return t
}()
