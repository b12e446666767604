package main

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// startupPacketBytes is the startup packet each stalled client sends; PostgreSQL refuses
	// any over 10,000 bytes.
	startupPacketBytes = 30 << 20
	// missingUser is a user neither proxy knows.
	missingUser = "tenantproxy_bench_nobody"
	// bigStatements are the sizes of the statements one client runs; preparedCount statements
	// of preparedBytes are prepared, closed, and the client leaves.
	preparedCount = 12
	preparedBytes = 3 << 20
	// guardTrigger in a comment makes tenantproxy's guard parse the statement rather than pass
	// it on its pre-filter.
	guardTrigger = "/* hold */"
)

var bigStatements = []int{3 << 20, 4 << 20}

// memoryResult is what one case made one proxy hold.
type memoryResult struct {
	Case     string `json:"case"`
	Proxy    string `json:"proxy"`
	BeforeKB int64  `json:"before_kb"`
	// PeakKB is the largest RSS of the proxy's life (VmHWM): each case runs on a fresh one.
	PeakKB int64 `json:"peak_kb"`
	// HoldingKB is the RSS while the clients are still connected.
	HoldingKB int64 `json:"holding_kb"`
	// AfterKB is the RSS --memory-settle after the clients left.
	AfterKB int64  `json:"after_kb"`
	Outcome string `json:"outcome"`
	// GuardParsed is how many statements tenantproxy's guard parsed during the case (-1: not
	// tenantproxy).
	GuardParsed float64 `json:"guard_parsed"`
	Error       string  `json:"error,omitempty"`
}

// memoryCase is one way a single tenant can make a proxy hold memory.
type memoryCase struct {
	Key, Title string
	// run does it against p and returns what the clients saw, calling hold while its clients
	// are still connected.
	run func(ctx context.Context, e *env, p *proxy, hold func()) (string, error)
}

var memoryCases = []memoryCase{
	{Key: "startup", Title: "(i) stalled clients, each after a 30 MB startup packet from a user that does not exist", run: stalledStartups},
	{Key: "statements", Title: "(ii) one client runs a 3 MB and a 4 MB SELECT ARRAY[0,0,...] the guard parses", run: bigSelects},
	{Key: "prepared", Title: "(iii) one client prepares twelve 3 MB statements, closes them and leaves", run: bigPrepared},
}

// runMemory runs each case against a fresh tenantproxy and a fresh PgBouncer.
func runMemory(ctx context.Context, e *env, rep *report) error {
	for _, c := range memoryCases {
		for _, s := range e.freshProxies() {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			p, err := s.start(ctx, fmt.Sprintf("%s-memory-%s", s.key, c.Key), s.label)
			if err != nil {
				return err
			}
			r := e.memoryRun(ctx, p, c)
			p.stop()
			logf("  memory, %s, %s: RSS %.1f MB before, peak %.1f MB, %.1f MB holding, %.1f MB after; %s %s", c.Key, r.Proxy,
				mb(r.BeforeKB), mb(r.PeakKB), mb(r.HoldingKB), mb(r.AfterKB), r.Outcome, r.Error)
			rep.Memory = append(rep.Memory, r)
		}
	}
	return nil
}

func mb(kb int64) float64 { return float64(kb) / 1024 }

func (e *env) memoryRun(ctx context.Context, p *proxy, c memoryCase) memoryResult {
	r := memoryResult{Case: c.Key, Proxy: p.Label, GuardParsed: -1}
	var err error
	if r.BeforeKB, err = settledRSS(ctx, p.pid()); err != nil {
		r.Error = err.Error()
		return r
	}
	parsedBefore, parsedErr := p.metric(ctx, "tenantproxy_guard_parsed_total")
	hold := func() { r.HoldingKB, _ = settledRSS(ctx, p.pid()) }
	r.Outcome, err = c.run(ctx, e, p, hold)
	if err != nil {
		r.Error = err.Error()
	}
	if parsedErr == nil {
		if after, err := p.metric(ctx, "tenantproxy_guard_parsed_total"); err == nil {
			r.GuardParsed = after - parsedBefore
		}
	}
	pause(ctx, e.o.MemorySettle) // how long the memory stays held: a measurement, not a wait
	r.AfterKB, _ = rssKB(p.pid())
	r.PeakKB, _ = peakRSSKB(p.pid())
	return r
}

// startupPacket is a protocol 3.0 startup packet of exactly startupPacketBytes from
// missingUser: the padding is the value of an "options" parameter.
func startupPacket() []byte {
	head := "user\x00" + missingUser + "\x00database\x00app\x00options\x00"
	b := make([]byte, 8, startupPacketBytes)
	binary.BigEndian.PutUint32(b[0:], startupPacketBytes)
	binary.BigEndian.PutUint32(b[4:], 3<<16)
	b = append(b, head...)
	b = append(b, strings.Repeat("x", startupPacketBytes-len(b)-2)...)
	return append(b, 0, 0)
}

// stalledStartups opens --memory-startup-clients connections that each send a whole
// startupPacket (as far as the proxy reads it) and then wait, reading nothing.
func stalledStartups(ctx context.Context, e *env, p *proxy, hold func()) (string, error) {
	packet := startupPacket()
	n := e.o.StartupClients
	conns := make([]net.Conn, n)
	sent := make([]sendOutcome, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", p.port))
			if err != nil {
				sent[i] = sendOutcome{kind: "not connected"}
				return
			}
			conns[i] = c
			sent[i] = sendAll(c, packet)
		})
	}
	wg.Wait()
	hold()
	// What the proxy did with each: answered, closed, or still waiting for more.
	replies := map[string]int{}
	for i, c := range conns {
		if c == nil {
			continue
		}
		replies[replyOf(c)]++
		conns[i] = nil
		c.Close()
	}
	return fmt.Sprintf("%d clients: %s; then the proxy: %s", n, summarizeSends(sent), summarize(replies)), nil
}

// sendOutcome is how far a client got with its packet.
type sendOutcome struct {
	kind string
	mb   int // sent before it stopped
}

// sendAll writes packet in pieces, each allowed five seconds: a proxy that stops reading
// stalls the client there.
func sendAll(c net.Conn, packet []byte) sendOutcome {
	const piece = 256 << 10
	for off := 0; off < len(packet); off += piece {
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(packet[off:min(off+piece, len(packet))]); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return sendOutcome{"stalled, the proxy no longer reading", off >> 20}
			}
			return sendOutcome{"cut off by the proxy", off >> 20}
		}
	}
	return sendOutcome{"sent the whole packet", len(packet) >> 20}
}

// summarizeSends counts the clients of each outcome, with how many MB they had sent.
func summarizeSends(sent []sendOutcome) string {
	type span struct{ n, lo, hi int }
	spans := map[string]*span{}
	for _, s := range sent {
		sp, ok := spans[s.kind]
		if !ok {
			sp = &span{lo: s.mb, hi: s.mb}
			spans[s.kind] = sp
		}
		sp.n++
		sp.lo, sp.hi = min(sp.lo, s.mb), max(sp.hi, s.mb)
	}
	var parts []string
	for kind, sp := range spans {
		mbs := fmt.Sprintf("%d MB", sp.lo)
		if sp.hi != sp.lo {
			mbs = fmt.Sprintf("%d to %d MB", sp.lo, sp.hi)
		}
		parts = append(parts, fmt.Sprintf("%d %s (%s sent)", sp.n, kind, mbs))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// replyOf reads what the proxy sent a stalled client: an error's message, nothing yet, or an
// end of the connection.
func replyOf(c net.Conn) string {
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	switch {
	case n > 0 && buf[0] == 'E':
		return "answered " + errorFields(buf[:n])
	case n > 0:
		return fmt.Sprintf("answered with message %q", buf[0])
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "kept the connection open, silent"
	default:
		return "closed the connection"
	}
}

// errorFields is the severity, code and message of an ErrorResponse.
func errorFields(msg []byte) string {
	var sev, code, text string
	for _, f := range strings.Split(string(msg[min(5, len(msg)):]), "\x00") {
		if f == "" {
			continue
		}
		switch f[0] {
		case 'S':
			sev = f[1:]
		case 'C':
			code = f[1:]
		case 'M':
			text = f[1:]
		}
	}
	if len(text) > 80 { // a proxy may echo the padding back
		text = text[:80] + "..."
	}
	return fmt.Sprintf("%s %s %q", sev, code, text)
}

func summarize(counts map[string]int) string {
	var parts []string
	for k, v := range counts {
		parts = append(parts, fmt.Sprintf("%d %s", v, k))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// bigArray is SELECT ARRAY[0,0,...] of about size bytes, tagged so each text is its own.
func bigArray(size int, tag string) string {
	head, tail := "SELECT "+tag+" AS tag, ARRAY[", "0] "+guardTrigger
	return head + strings.Repeat("0,", (size-len(head)-len(tail))/2) + tail
}

// bigSelects runs each of bigStatements once through the simple protocol.
func bigSelects(ctx context.Context, e *env, p *proxy, hold func()) (string, error) {
	conn, err := connectPgconn(ctx, p)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var outcomes []string
	for i, size := range bigStatements {
		_, err := conn.Exec(ctx, bigArray(size, fmt.Sprint(i))).ReadAll()
		outcomes = append(outcomes, fmt.Sprintf("%d MB: %s", size>>20, okOr(err)))
	}
	hold()
	return strings.Join(outcomes, "; "), nil
}

// bigPrepared prepares preparedCount statements of preparedBytes (Parse, Describe, Sync),
// closes each (Close, Sync) and leaves.
func bigPrepared(ctx context.Context, e *env, p *proxy, hold func()) (string, error) {
	conn, err := connectPgconn(ctx, p)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	prepared, closed := 0, 0
	var firstErr error
	for i := range preparedCount {
		if _, err := conn.Prepare(ctx, fmt.Sprintf("big%d", i), bigArray(preparedBytes, fmt.Sprint(i)), nil); err != nil {
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		prepared++
	}
	for i := range preparedCount {
		if err := conn.Deallocate(ctx, fmt.Sprintf("big%d", i)); err != nil {
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		closed++
	}
	hold()
	s := fmt.Sprintf("%d of %d prepared, %d closed", prepared, preparedCount, closed)
	if firstErr != nil {
		s += "; first error: " + firstErr.Error()
	}
	return s, nil
}

func connectPgconn(ctx context.Context, p *proxy) (*pgconn.PgConn, error) {
	cfg, err := p.pgconnConfig(benchUser)
	if err != nil {
		return nil, err
	}
	return pgconn.ConnectConfig(ctx, cfg)
}

func okOr(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}
