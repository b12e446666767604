package guard

import (
	"crypto/sha256"
	"encoding/hex"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// fingerprintMax bounds a fingerprint, which goes into logs.
const fingerprintMax = 200

// Fingerprint returns sql with its literals replaced by $n, at most 200 bytes, for logs: a
// tenant's values (and the tenant id someone tried to set) stay out of them. An unparsable text
// gets a short hash instead.
func Fingerprint(sql string) string {
	normalized, err := pg_query.Normalize(sql)
	if err != nil {
		sum := sha256.Sum256([]byte(sql))
		return "unparsable:" + hex.EncodeToString(sum[:8])
	}
	if len(normalized) <= fingerprintMax {
		return normalized
	}
	cut := fingerprintMax
	for cut > 0 && !utf8.RuneStart(normalized[cut]) {
		cut--
	}
	return normalized[:cut]
}
