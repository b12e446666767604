package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// The startup packet claims exactly its own length, protocol 3.0, and names the missing user
// before its padding, so a proxy can refuse it as soon as it reads the header.
func TestStartupPacket(t *testing.T) {
	p := startupPacket()
	if len(p) != startupPacketBytes {
		t.Fatalf("packet is %d bytes, want %d", len(p), startupPacketBytes)
	}
	if n := binary.BigEndian.Uint32(p); n != startupPacketBytes {
		t.Fatalf("length field %d, want %d", n, startupPacketBytes)
	}
	if v := binary.BigEndian.Uint32(p[4:]); v != 3<<16 {
		t.Fatalf("protocol %#x, want 3.0", v)
	}
	if !bytes.HasPrefix(p[8:], []byte("user\x00"+missingUser+"\x00")) || !bytes.HasSuffix(p, []byte{'x', 0, 0}) {
		t.Fatalf("packet does not start with the user or end with the padding's terminators")
	}
}

// The big statements are as large as asked, each its own text, with the guard's trigger.
func TestBigArray(t *testing.T) {
	a, b := bigArray(preparedBytes, "1"), bigArray(preparedBytes, "2")
	for _, s := range []string{a, b} {
		if len(s) < preparedBytes-2 || len(s) > preparedBytes {
			t.Fatalf("statement is %d bytes, want about %d", len(s), preparedBytes)
		}
		if !strings.HasSuffix(s, "0] "+guardTrigger) {
			t.Fatalf("statement ends %q", s[len(s)-20:])
		}
	}
	if a == b {
		t.Fatal("two tags gave the same text")
	}
}

// The victim's floor under a busy database is 2/20 of what both tenants complete, never more
// than it does alone; elsewhere 0.7x its solo throughput.
func TestFairFloor(t *testing.T) {
	solo := fairness{victimPS: 1000, p99: 2}
	for _, c := range []struct {
		shape string
		total float64
		want  float64
	}{
		{"short", 5000, 500},
		{"short", 50000, 1000},
		{"hold", 5000, 700},
		{"long", 5000, 700},
	} {
		if got := fairFloor(c.shape, solo, fairness{total: c.total}); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s with %.0f/s in all: floor %.1f, want %.1f", c.shape, c.total, got, c.want)
		}
	}
	if got := fairP99Limit("storm", solo); got != fairP99FloorMS {
		t.Errorf("p99 limit with a 2 ms solo p99: %.1f, want the %d ms floor", got, fairP99FloorMS)
	}
	if got := fairP99Limit("hold", fairness{p99: 10}); got != 50 {
		t.Errorf("p99 limit with a 10 ms solo p99: %.1f, want 50", got)
	}
	if !math.IsNaN(fairP99Limit("short", solo)) {
		t.Error("flood (b) has no p99 limit")
	}
}

// A load counts only the operations that ended inside the window, failures apart.
func TestLoadFigures(t *testing.T) {
	from := time.Now()
	to := from.Add(time.Second)
	l := &load{logs: []opLog{{ops: []opRecord{
		{end: from.Add(-time.Millisecond), took: time.Millisecond},
		{end: from.Add(100 * time.Millisecond), took: 2 * time.Millisecond},
		{end: from.Add(200 * time.Millisecond), took: 4 * time.Millisecond},
		{end: from.Add(300 * time.Millisecond), took: time.Millisecond, err: errors.New("refused")},
		{end: to.Add(time.Millisecond), took: time.Millisecond},
	}}}}
	f := l.figures(from, to)
	if f.Ops != 2 || f.Errors != 1 || f.PerSecond != 2 || f.P50MS != 2 || f.P99MS != 4 {
		t.Fatalf("figures %+v: want 2 ops, 1 error, 2/s, p50 2 ms, p99 4 ms", f)
	}
}

// The stalled clients are counted by outcome, with the range of what they had sent.
func TestSummarizeSends(t *testing.T) {
	got := summarizeSends([]sendOutcome{{"cut off by the proxy", 16}, {"sent the whole packet", 30}, {"cut off by the proxy", 19}, {"cut off by the proxy", 17}})
	want := "1 sent the whole packet (30 MB sent), 3 cut off by the proxy (16 to 19 MB sent)"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
