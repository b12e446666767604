package lockdown_test

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/tenantproxy/tenantproxy/lockdown"
)

// group is one group of review.txt: functions the app role may execute, safe for one reason.
type group struct {
	id, title, why string
	signatures     []string
}

// readReview parses review.txt (its format is described at its top).
func readReview(t *testing.T) []group {
	t.Helper()
	f, err := os.Open("review.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var groups []group
	lines := bufio.NewScanner(f)
	for n := 1; lines.Scan(); n++ {
		line := lines.Text()
		switch {
		case strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			id, title, ok := strings.Cut(strings.TrimPrefix(line, "["), "] ")
			if !ok || id == "" || title == "" {
				t.Fatalf("review.txt:%d: want \"[group] title\", got %q", n, line)
			}
			groups = append(groups, group{id: id, title: title})
		case len(groups) == 0:
			t.Fatalf("review.txt:%d: %q comes before any group", n, line)
		case line[0] == ' ' || line[0] == '\t':
			g := &groups[len(groups)-1]
			if len(g.signatures) > 0 {
				t.Fatalf("review.txt:%d: group %s's reason continues after its functions", n, g.id)
			}
			g.why = strings.TrimSpace(g.why + " " + strings.TrimSpace(line))
		default:
			g := &groups[len(groups)-1]
			g.signatures = append(g.signatures, line)
		}
	}
	if err := lines.Err(); err != nil {
		t.Fatal(err)
	}
	return groups
}

// reviewedSignatures maps each signature of review.txt to its group.
func reviewedSignatures(t *testing.T) map[string]string {
	t.Helper()
	reviewed := map[string]string{}
	for _, g := range readReview(t) {
		for _, s := range g.signatures {
			reviewed[s] = g.id
		}
	}
	return reviewed
}

// catalogFunctionName is the name of a pg_catalog function from its signature as regprocedure
// prints it with search_path = pg_catalog, or "" for a function of another schema.
func catalogFunctionName(signature string) string {
	name, _, _ := strings.Cut(signature, "(")
	if strings.HasPrefix(name, `"`) {
		return strings.Trim(name, `"`)
	}
	if strings.Contains(name, ".") {
		return ""
	}
	return name
}

func TestReviewIsWellFormed(t *testing.T) {
	groups := readReview(t)
	if len(groups) < 10 {
		t.Fatalf("review.txt has %d groups; is it truncated?", len(groups))
	}
	seenGroup := map[string]bool{}
	seen := map[string]string{}
	for _, g := range groups {
		if seenGroup[g.id] {
			t.Errorf("group %s appears twice", g.id)
		}
		seenGroup[g.id] = true
		if len(g.why) < 40 {
			t.Errorf("group %s: its reason (%q) says too little", g.id, g.why)
		}
		if len(g.signatures) == 0 {
			t.Errorf("group %s has no functions", g.id)
		}
		for _, s := range g.signatures {
			if !strings.HasSuffix(s, ")") || !strings.Contains(s, "(") {
				t.Errorf("group %s: %q is not a signature", g.id, s)
			}
			if other, dup := seen[s]; dup {
				t.Errorf("%s is in group %s and in group %s", s, other, g.id)
			}
			seen[s] = g.id
		}
	}
}

// A function cannot be both revoked and reviewed safe.
func TestReviewHoldsNoRevokedFunction(t *testing.T) {
	for s, g := range reviewedSignatures(t) {
		if rule, ok := lockdown.Revoked(catalogFunctionName(s)); ok {
			t.Errorf("%s is in review group %s but revoked under %s", s, g, rule)
		}
	}
}

func TestCatalogFunctionName(t *testing.T) {
	for signature, want := range map[string]string{
		"abs(integer)":     "abs",
		`"current_user"()`: "current_user",
		"public.l2_distance(public.vector,public.vector)": "",
		"information_schema._pg_expandarray(anyarray)":    "",
		"to_char(timestamp with time zone,text)":          "to_char",
	} {
		if got := catalogFunctionName(signature); got != want {
			t.Errorf("catalogFunctionName(%q) = %q, want %q", signature, got, want)
		}
	}
}

func describe(items []string) string {
	var b strings.Builder
	for _, s := range items {
		fmt.Fprintf(&b, "\n  %s", s)
	}
	return b.String()
}
