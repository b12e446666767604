package guard

import (
	"errors"
	"maps"
	"slices"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// toWrappers rewrites the function calls of sql found at the byte offsets of calls (as the parser
// gives them) to call the database's wrappers instead: the name, however it is written
// (set_config, pg_catalog.set_config, "set_config", U&"..." UESCAPE '!'), up to the opening
// parenthesis, is replaced. The tokens come from PostgreSQL's own scanner, as the parse did.
func toWrappers(sql []byte, wrappers map[int]string) (string, error) {
	scan, err := pg_query.Scan(string(sql))
	if err != nil {
		return "", err
	}
	tokens := scan.GetTokens()
	calls := slices.Sorted(maps.Keys(wrappers))
	out := string(sql)
	for i := len(calls) - 1; i >= 0; i-- { // from the end, so earlier offsets stay right
		start := calls[i]
		first := slices.IndexFunc(tokens, func(t *pg_query.ScanToken) bool { return int(t.GetStart()) == start })
		if first < 0 {
			return "", errors.New("function call not where the parser put it")
		}
		open := slices.IndexFunc(tokens[first:], func(t *pg_query.ScanToken) bool { return t.GetToken() == pg_query.Token_ASCII_40 })
		if open < 0 {
			return "", errors.New("function call without arguments")
		}
		end := int(tokens[first+open].GetStart())
		out = out[:start] + wrappers[start] + out[end:]
	}
	return out, nil
}
