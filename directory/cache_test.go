package directory

import "testing"

// An answer read before an invalidation must not be stored after it: it may predate the change.
func TestCacheRefusesAnAnswerOlderThanAnInvalidation(t *testing.T) {
	c := newCache(10)
	gen := c.generation()
	c.invalidate([]string{"alice"})
	c.put("alice", User{Name: "alice"}, true, gen)
	if _, _, hit := c.get("alice"); hit {
		t.Error("an answer read before the invalidation was cached")
	}
	c.put("alice", User{Name: "alice"}, true, c.generation())
	if u, found, hit := c.get("alice"); !hit || !found || u.Name != "alice" {
		t.Errorf("a current answer was not cached: %+v %v %v", u, found, hit)
	}
}

func TestCacheBoundsUnknownNames(t *testing.T) {
	c := newCache(3)
	c.put("known", User{Name: "known"}, true, c.generation())
	for _, name := range []string{"a", "b", "c", "d"} {
		c.put(name, User{}, false, c.generation())
	}
	if len(c.unknown) > 3 {
		t.Errorf("%d unknown names cached, bound 3", len(c.unknown))
	}
	if _, found, hit := c.get("d"); !hit || found {
		t.Errorf("the newest unknown name: found %v hit %v", found, hit)
	}
	if _, found, _ := c.get("known"); !found {
		t.Error("forgetting unknown names forgot a known user")
	}
	if names := c.flush(); len(names) != 1 || names[0] != "known" {
		t.Errorf("flush reported %v, want the known user", names)
	}
	if _, _, hit := c.get("d"); hit {
		t.Error("flush left an unknown name")
	}
}
