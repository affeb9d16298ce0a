package revledger

// Fleet sync from Go (docs/SYNC.md): Freshness, Middleware's WithMaxStaleness and the
// Publisher, against a real redis-server and `revledger sync` process started by each
// test (a free loopback port, no persistence) and killed at its end. Without
// redis-server on the PATH those tests fail when CI is set and are skipped otherwise.
// No sleep stands for synchronisation: every wait polls a condition with a deadline.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const waitDeadline = 60 * time.Second

// waitUntil polls cond until it holds; fails the test naming what after waitDeadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > waitDeadline {
			t.Fatalf("timed out after %v waiting until %s", waitDeadline, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// revledgerCLI is the Rust CLI, built by `cargo build --release --bins`.
func revledgerCLI(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "target", "release", "revledger"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: run `cargo build --release --bins` at the repository root", p)
	}
	return p
}

// redisServer is a redis-server of the test's own on a free loopback port.
type redisServer struct {
	t    *testing.T
	port int
	dir  string
	args []string
	cmd  *exec.Cmd
}

// startRedis starts one, or skips the test (saying so) when redis-server is not
// installed and CI is not set; with CI set, a missing redis-server fails the test.
func startRedis(t *testing.T, args ...string) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server is not installed, and CI is set: the sync tests need it (scripts/install-deps installs the Debian package redis-server)")
		}
		t.Skip("skipping: redis-server is not installed (apt-get install redis-server)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r := &redisServer{t: t, port: port, dir: t.TempDir(), args: args}
	t.Cleanup(r.stop) // first: a launch that fails still stops the server
	r.launch()
	return r
}

func (r *redisServer) launch() {
	r.t.Helper()
	args := append([]string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir}, r.args...)
	r.cmd = exec.Command("redis-server", args...)
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	waitUntil(r.t, "redis-server answers", func() bool {
		// Any reply will do: with --requirepass, PING answers -NOAUTH.
		_, err := r.do("PING")
		var re *RedisError
		return err == nil || errors.As(err, &re)
	})
}

func (r *redisServer) stop() {
	if r.cmd != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
		r.cmd = nil
	}
}

// restart stops the server and starts a new, empty one on the same port.
func (r *redisServer) restart() {
	r.stop()
	r.launch()
}

func (r *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// do runs one command on a connection of its own and returns the reply, read by
// readAnyReply (a test-only reader of every RESP2 type).
func (r *redisServer) do(args ...string) (interface{}, error) {
	conn, err := net.DialTimeout("tcp", r.addr(), time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	cmd := make([][]byte, len(args))
	for i, a := range args {
		cmd[i] = []byte(a)
	}
	if _, err := conn.Write(encodeCommand(cmd)); err != nil {
		return nil, err
	}
	return readAnyReply(bufio.NewReader(conn))
}

func (r *redisServer) mustDo(args ...string) interface{} {
	r.t.Helper()
	v, err := r.do(args...)
	if err != nil {
		r.t.Fatalf("redis %v: %v", args, err)
	}
	return v
}

// readAnyReply reads simple strings and bulk strings (as string), integers (int64),
// nil, arrays ([]interface{}) and errors (*RedisError).
func readAnyReply(rd *bufio.Reader) (interface{}, error) {
	line, err := readLine(rd)
	if err != nil {
		return nil, err
	}
	if len(line) == 0 {
		return nil, errProtocol
	}
	switch line[0] {
	case ':':
		return strconv.ParseInt(string(line[1:]), 10, 64)
	case '*':
		n, err := strconv.Atoi(string(line[1:]))
		if err != nil || n < -1 {
			return nil, errProtocol
		}
		if n == -1 {
			return nil, nil
		}
		items := make([]interface{}, n)
		for i := range items {
			if items[i], err = readAnyReply(rd); err != nil {
				return nil, err
			}
		}
		return items, nil
	case '$':
		n, err := strconv.Atoi(string(line[1:]))
		if err != nil || n < -1 {
			return nil, errProtocol
		}
		if n == -1 {
			return nil, nil
		}
		body := make([]byte, n+2)
		if _, err := io.ReadFull(rd, body); err != nil {
			return nil, err
		}
		return string(body[:n]), nil
	case '+':
		return string(line[1:]), nil
	case '-':
		return nil, &RedisError{Message: string(line[1:])}
	}
	return nil, errProtocol
}

// streamIDs are the ids of the stream's entries, in order.
func (r *redisServer) streamIDs(stream string) []string {
	r.t.Helper()
	v := r.mustDo("XRANGE", stream, "-", "+")
	entries, ok := v.([]interface{})
	if !ok {
		r.t.Fatalf("XRANGE answered %#v", v)
	}
	var ids []string
	for _, e := range entries {
		pair, ok := e.([]interface{})
		if !ok || len(pair) != 2 {
			r.t.Fatalf("XRANGE entry %#v", e)
		}
		ids = append(ids, pair[0].(string))
	}
	return ids
}

// streamFields are the field/value pairs of the entry id.
func (r *redisServer) streamFields(stream, id string) []string {
	r.t.Helper()
	v := r.mustDo("XRANGE", stream, id, id)
	entries, ok := v.([]interface{})
	if !ok || len(entries) != 1 {
		r.t.Fatalf("XRANGE %s answered %#v", id, v)
	}
	var out []string
	for _, f := range entries[0].([]interface{})[1].([]interface{}) {
		out = append(out, f.(string))
	}
	return out
}

// startSync runs `revledger sync` feeding ledger from stream; it is killed (-9) at the
// end of the test, and its log shown if the test failed.
func startSync(t *testing.T, redisURL, stream, ledger string, extra ...string) *exec.Cmd {
	t.Helper()
	logPath := ledger + "." + strconv.FormatInt(time.Now().UnixNano(), 10) + ".sync.log"
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"sync", "--redis", redisURL, "--stream", stream,
		"--max-token-lifetime", "86400", ledger}, extra...)
	cmd := exec.Command(revledgerCLI(t), args...)
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start revledger sync: %v", err)
	}
	logFile.Close()
	t.Cleanup(func() {
		killProcess(cmd)
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("log of revledger sync on %s:\n%s", ledger, log)
		}
	})
	return cmd
}

func killProcess(cmd *exec.Cmd) {
	if cmd.ProcessState == nil {
		cmd.Process.Kill()
		cmd.Wait()
	}
}

// readerOf opens a reader of a ledger that a sync process creates, once it exists.
func readerOf(t *testing.T, path string) *Ledger {
	t.Helper()
	var l *Ledger
	waitUntil(t, path+" can be opened", func() bool {
		var err error
		l, err = OpenReader(path)
		return err == nil
	})
	t.Cleanup(func() { l.Close() })
	return l
}

func mustFreshness(t *testing.T, l *Ledger) Freshness {
	t.Helper()
	f, err := l.Freshness()
	if err != nil {
		t.Fatalf("Freshness: %v", err)
	}
	return f
}

// idLess compares entry ids "<ms>-<seq>" numerically.
func idLess(t *testing.T, a, b string) bool {
	t.Helper()
	parse := func(s string) (uint64, uint64) {
		ms, seq, ok := strings.Cut(s, "-")
		x, err1 := strconv.ParseUint(ms, 10, 64)
		y, err2 := strconv.ParseUint(seq, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			t.Fatalf("%q is not an entry id", s)
		}
		return x, y
	}
	am, as := parse(a)
	bm, bs := parse(b)
	return am < bm || (am == bm && as < bs)
}

// fixedClock is a middleware option setting the clock it judges staleness by.
func fixedClock(now time.Time) Option {
	return func(m *middleware) { m.now = func() time.Time { return now } }
}

func TestFreshnessOfALedgerNeverSynced(t *testing.T) {
	w, path := openWriter(t)
	r := openReader(t, path)
	mustRevoke(t, w, ScopeRole, "acme", "admin", 2000) // a revoke is not hearing from a stream
	for _, l := range []*Ledger{w, r} {
		f := mustFreshness(t, l)
		if !f.LastHeard.IsZero() || f.LastID != "" {
			t.Errorf("never synced: %+v", f)
		}
		if _, heard := f.Age(time.Now()); heard {
			t.Errorf("Age says heard for %+v", f)
		}
		if heard, degraded, err := l.lastHeard(); err != nil || heard != 0 || degraded != 0 {
			t.Errorf("lastHeard: %d, %v", heard, err)
		}
	}
	r.Close()
	if _, err := r.Freshness(); !errors.Is(err, ErrClosed) {
		t.Errorf("Freshness after Close: %v", err)
	}
	if _, _, err := r.lastHeard(); !errors.Is(err, ErrClosed) {
		t.Errorf("lastHeard after Close: %v", err)
	}
}

func TestFreshnessAge(t *testing.T) {
	heard := time.Unix(1_700_000_000, 0)
	f := Freshness{LastHeard: heard, LastID: "1-0"}
	if age, ok := f.Age(heard.Add(42 * time.Second)); !ok || age != 42*time.Second {
		t.Errorf("Age: %v %v", age, ok)
	}
	if age, ok := f.Age(heard.Add(-time.Second)); !ok || age != 0 {
		t.Errorf("Age with the clock behind: %v %v", age, ok)
	}
}

// A gateway asking for fresh answers refuses valid tokens from a ledger no sync process
// ever fed, saying why; revoked tokens still get their 401.
func TestMiddlewareMaxStalenessNeverHeard(t *testing.T) {
	w, path := openWriter(t)
	gw := openReader(t, path)
	mustRevoke(t, w, ScopeRole, "acme", "super_admin", 2000)
	next, calls := okHandler()

	h := Middleware(next, gw, claimsFromHeaders, WithMaxStaleness(10*time.Second))
	rec := serve(h, "bruce", "viewer", "1500")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "never heard from its stream") {
		t.Errorf("valid token, never-synced ledger: %d %q", rec.Code, rec.Body.String())
	}
	rec = serve(h, "john", "super_admin", "1999")
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Header().Get("WWW-Authenticate"), "role permissions changed at 2000") {
		t.Errorf("revoked token, never-synced ledger: %d %q", rec.Code, rec.Header().Get("WWW-Authenticate"))
	}
	// No token: nothing to check, so nothing stale to refuse; the next handler serves it.
	rec = serve(h, "", "", "0")
	if rec.Code != http.StatusOK || *calls != 1 {
		t.Errorf("no token: %d, next called %d times", rec.Code, *calls)
	}
	*calls = 0

	rec = serve(Middleware(next, gw, claimsFromHeaders, WithMaxStaleness(time.Minute), WithCheckErrorStatus(http.StatusGatewayTimeout)), "bruce", "", "1500")
	if rec.Code != http.StatusGatewayTimeout || !strings.Contains(rec.Body.String(), "never heard") {
		t.Errorf("WithCheckErrorStatus: %d %q", rec.Code, rec.Body.String())
	}

	var seen error
	handler := WithCheckErrorHandler(func(w http.ResponseWriter, r *http.Request, err error, next http.Handler) {
		seen = err
		http.Error(w, "stale", http.StatusTeapot)
	})
	rec = serve(Middleware(next, gw, claimsFromHeaders, handler, WithMaxStaleness(time.Minute)), "bruce", "", "1500")
	var stale *StaleError
	if rec.Code != http.StatusTeapot || !errors.Is(seen, ErrStale) || !errors.As(seen, &stale) ||
		!stale.LastHeard.IsZero() || stale.MaxStaleness != time.Minute {
		t.Errorf("WithCheckErrorHandler: %d, %#v", rec.Code, seen)
	}
	if *calls != 0 {
		t.Errorf("next was called %d times", *calls)
	}
	// Without the option, the same ledger serves valid tokens.
	if rec = serve(Middleware(next, gw, claimsFromHeaders), "bruce", "", "1500"); rec.Code != http.StatusOK {
		t.Errorf("without WithMaxStaleness: %d", rec.Code)
	}
	// A closed ledger is a check error, as before.
	gw.Close()
	if rec = serve(h, "bruce", "", "1500"); rec.Code != http.StatusServiceUnavailable || strings.Contains(rec.Body.String(), "stream") {
		t.Errorf("closed ledger: %d %q", rec.Code, rec.Body.String())
	}
}

func TestWithMaxStalenessRefusesNonPositive(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("WithMaxStaleness(%v) did not panic", d)
				}
			}()
			WithMaxStaleness(d)
		}()
	}
}

// Rules every sync process would skip, or that trimming would drop while they still
// matter, are refused before anything is sent (the address is never dialled).
func TestPublishRefusesBadRules(t *testing.T) {
	ctx := context.Background()
	now := time.Now().Unix()
	long := strings.Repeat("k", MaxKeyLen+1)
	for _, tc := range []struct {
		name string
		rule Rule
		opts []PublishOption
		want string
	}{
		{"global with a key", Rule{Scope: ScopeGlobal, Key: b("x"), At: 1}, nil, "no tenant and no key"},
		{"tenant with a key", Rule{Scope: ScopeTenant, Tenant: b("acme"), Key: b("x"), At: 1}, nil, "no key besides"},
		{"role without a key", Rule{Scope: ScopeRole, Tenant: b("acme"), At: 1}, nil, "non-empty role key"},
		{"over-long key", Rule{Scope: ScopeSubject, Tenant: b("acme"), Key: b(long), At: 1}, nil, "the limit is 4096"},
		{"over-long tenant", Rule{Scope: ScopeTenant, Tenant: b(long), At: 1}, nil, "tenant is 4097 bytes"},
		{"bad scope", Rule{Scope: Scope(7), Tenant: b("acme"), Key: b("x"), At: 1}, nil, "unknown scope"},
		{"cutoff far ahead", Rule{Scope: ScopeRole, Tenant: b("acme"), Key: b("x"), At: now + 3600}, nil, "a cutoff more than leeway ahead"},
		{"exp beyond the trim horizon", Rule{Scope: ScopeToken, Tenant: b("acme"), Key: b("j"), At: now + 7200},
			[]PublishOption{WithTrim(time.Hour, time.Minute)}, "exp more than max token lifetime + leeway ahead"},
		{"over-long reason", Rule{Scope: ScopeGlobal, At: 1}, []PublishOption{WithReason(long)}, "reason is longer"},
		{"zero trim lifetime", Rule{Scope: ScopeGlobal, At: 1}, []PublishOption{WithTrim(0, time.Minute)}, "max token lifetime > 0"},
	} {
		// Port 1 on loopback: nothing listens there, so reaching the network would fail
		// with a connection error, not ErrInvalidArgument.
		_, err := Publish(ctx, "127.0.0.1:1", "revocations", tc.rule, tc.opts...)
		if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want ErrInvalidArgument saying %q", tc.name, err, tc.want)
		}
	}
	// Without trimming, a cutoff far ahead is the publisher's business; the rule then
	// reaches the network (and fails there: nothing listens on port 1).
	_, err := Publish(ctx, "127.0.0.1:1", "revocations", Rule{Scope: ScopeRole, Tenant: b("acme"), Key: b("x"), At: now + 3600}, WithoutTrim())
	if err == nil || errors.Is(err, ErrInvalidArgument) || !isConnError(err) {
		t.Errorf("WithoutTrim to a closed port: %v", err)
	}
	for _, stream := range []string{"", long} {
		if _, err := NewPublisher("127.0.0.1:1", stream); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("stream of %d bytes: %v", len(stream), err)
		}
	}
}

func TestParseRedisAddr(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want redisAddr
	}{
		{"127.0.0.1:6380", redisAddr{hostport: "127.0.0.1:6380"}},
		{"redis://redis.internal/", redisAddr{hostport: "redis.internal:6379"}},
		{"redis://:s3cret@h:7000/2", redisAddr{hostport: "h:7000", password: "s3cret", hasPass: true, db: 2}},
		{"redis://app:pw@h:7000", redisAddr{hostport: "h:7000", username: "app", password: "pw", hasPass: true}},
		{"redis://justpw@h:1", redisAddr{hostport: "h:1", password: "justpw", hasPass: true, loneUser: true}},
		{"rediss://h:1/", redisAddr{hostport: "h:1", tls: true}},
		{"redis://[::1]:7000/0", redisAddr{hostport: "[::1]:7000"}},
	} {
		got, err := parseRedisAddr(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseRedisAddr(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "localhost", "redis:///0", "redis://h:1/x", "redis://h:1/-1", "redis://h:1/?db=2"} {
		if _, err := parseRedisAddr(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("parseRedisAddr(%q): %v, want ErrInvalidArgument", bad, err)
		}
	}
}

func TestRESP(t *testing.T) {
	got := string(encodeCommand([][]byte{[]byte("XADD"), []byte("s"), {}, []byte("a\r\n\x00b")}))
	if want := "*4\r\n$4\r\nXADD\r\n$1\r\ns\r\n$0\r\n\r\n$5\r\na\r\n\x00b\r\n"; got != want {
		t.Errorf("encodeCommand: %q, want %q", got, want)
	}
	read := func(s string) (*string, error) { return readReply(bufio.NewReader(strings.NewReader(s))) }
	if s, err := read("$5\r\n1-2\r\n\r\n"); err != nil || s == nil || *s != "1-2\r\n" {
		t.Errorf("bulk: %v %v", s, err)
	}
	if s, err := read("+OK\r\n"); err != nil || *s != "OK" {
		t.Errorf("simple: %v %v", s, err)
	}
	if s, err := read("$-1\r\n"); err != nil || s != nil {
		t.Errorf("nil: %v %v", s, err)
	}
	var re *RedisError
	if _, err := read("-ERR bad\r\n"); !errors.As(err, &re) || re.Message != "ERR bad" {
		t.Errorf("error: %v", err)
	}
	if s, err := read(":1\r\n"); err != nil || s == nil || *s != "1" {
		t.Errorf("integer: %v %v", s, err)
	}
	for _, bad := range []string{":x\r\n", "*0\r\n", "$3\r\nabcd\r\n", "$x\r\n", "$99999999\r\n", "+OK\n", "\r\n"} {
		if _, err := read(bad); !errors.Is(err, errProtocol) {
			t.Errorf("%q: %v, want a protocol error", bad, err)
		}
	}
	if _, err := read("$5\r\nab"); err == nil {
		t.Errorf("truncated bulk: no error")
	}
}

// Go publishes, a `revledger sync` process applies, a Go reader on the host sees the
// rule; the ledger's freshness follows the stream.
func TestPublishSyncFreshness(t *testing.T) {
	redis := startRedis(t)
	url := "redis://" + redis.addr() + "/"
	path := filepath.Join(t.TempDir(), "host.ledger")
	sync := startSync(t, url, "revocations", path)
	gw := readerOf(t, path)

	// Connected to an empty stream: last heard is set, no entry applied yet.
	waitUntil(t, "the ledger has heard from the stream", func() bool {
		return !mustFreshness(t, gw).LastHeard.IsZero()
	})
	if f := mustFreshness(t, gw); f.LastID != "" {
		t.Errorf("empty stream, yet LastID %q", f.LastID)
	}

	ctx := context.Background()
	cutoff := NowCutoff()
	john := &Token{Tenant: b("acme"), Subject: b("john"), Roles: [][]byte{b("super_admin")}, IssuedAt: cutoff - 60}
	if v := mustCheck(t, gw, john); v.Revoked {
		t.Fatalf("john before the rule: %v", v)
	}
	id1, err := Publish(ctx, url, "revocations", Rule{Scope: ScopeRole, Tenant: b("acme"), Key: b("super_admin"), At: cutoff},
		WithReason("super_admin lost billing:write"), WithOrigin("go test"))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	want := Verdict{Revoked: true, Scope: ScopeRole, Cutoff: cutoff}
	waitUntil(t, "the gateway sees john revoked", func() bool { return mustCheck(t, gw, john) == want })
	waitUntil(t, "the ledger's position is the entry", func() bool { return mustFreshness(t, gw).LastID == id1 })
	if got := redis.streamFields("revocations", id1); strings.Join(got, "|") !=
		"scope|role|tenant|acme|key|super_admin|at|"+strconv.FormatInt(cutoff, 10)+"|reason|super_admin lost billing:write|origin|go test" {
		t.Errorf("entry fields: %q", got)
	}

	// Binary-safe bytes, through a Publisher kept open.
	p, err := NewPublisher(redis.addr(), "revocations", WithOrigin("iam"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	tenant, sub := []byte("t\x00\xff\r\n"), []byte("user\r\n$3\r\n*")
	id2, err := p.PublishWithNotes(ctx, Rule{Scope: ScopeSubject, Tenant: tenant, Key: sub, At: 1_700_000_000}, Notes{Reason: "left"})
	if err != nil {
		t.Fatalf("PublishWithNotes: %v", err)
	}
	if !idLess(t, id1, id2) {
		t.Errorf("ids do not increase: %s then %s", id1, id2)
	}
	odd := &Token{Tenant: tenant, Subject: sub, IssuedAt: 1_699_999_999}
	waitUntil(t, "the gateway sees the binary subject revoked", func() bool { return mustCheck(t, gw, odd).Revoked })
	if v := mustCheck(t, gw, &Token{Tenant: tenant, Subject: b("user"), IssuedAt: 1}); v.Revoked {
		t.Errorf("a prefix of the binary subject is revoked: %v", v)
	}
	waitUntil(t, "freshness names the second entry", func() bool { return mustFreshness(t, gw).LastID == id2 })
	if got := redis.streamFields("revocations", id2); got[len(got)-4] != "reason" || got[len(got)-1] != "iam" {
		t.Errorf("notes of the second entry: %q", got)
	}

	// A quiet stream still advances "last heard" (heartbeats).
	before := mustFreshness(t, gw).LastHeard
	waitUntil(t, "last heard advances on a quiet stream", func() bool {
		return mustFreshness(t, gw).LastHeard.After(before)
	})

	// The gateway: fresh while sync runs.
	next, calls := okHandler()
	bruce := func(h http.Handler) int { return serve(h, "bruce", "viewer", strconv.FormatInt(cutoff-60, 10)).Code }
	if code := bruce(Middleware(next, gw, claimsFromHeaders, WithMaxStaleness(time.Hour))); code != http.StatusOK || *calls != 1 {
		t.Errorf("fresh ledger: %d", code)
	}
	// The sync process dies: last heard stops; a gateway judging 11 s later fails closed.
	killProcess(sync)
	f := mustFreshness(t, gw)
	if f.LastID != id2 || f.LastHeard.IsZero() {
		t.Fatalf("after sync died: %+v", f)
	}
	if code := bruce(Middleware(next, gw, claimsFromHeaders, WithMaxStaleness(10*time.Second), fixedClock(f.LastHeard.Add(9*time.Second)))); code != http.StatusOK {
		t.Errorf("9 s after last heard, limit 10 s: %d", code)
	}
	rec := serve(Middleware(next, gw, claimsFromHeaders, WithMaxStaleness(10*time.Second), fixedClock(f.LastHeard.Add(11*time.Second))),
		"bruce", "viewer", strconv.FormatInt(cutoff-60, 10))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "last heard from its stream 11s ago (limit 10s)") {
		t.Errorf("11 s after last heard, limit 10 s: %d %q", rec.Code, rec.Body.String())
	}
	if *calls != 2 {
		t.Errorf("next called %d times, want 2", *calls)
	}
	// John's token is revoked whatever the staleness.
	rec = serve(Middleware(next, gw, claimsFromHeaders, WithMaxStaleness(10*time.Second), fixedClock(f.LastHeard.Add(time.Hour))),
		"john", "super_admin", strconv.FormatInt(cutoff-60, 10))
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("revoked token on a stale ledger: %d", rec.Code)
	}
}

// Publishing trims the stream by age with an exact MINID; WithoutTrim leaves it alone.
func TestPublishTrimsByAge(t *testing.T) {
	redis := startRedis(t)
	ctx := context.Background()
	// An entry from 1970 (id 1000-0): older than any trim horizon.
	if got := redis.mustDo("XADD", "revocations", "1000-0", "scope", "global", "at", "5"); got != "1000-0" {
		t.Fatalf("XADD: %v", got)
	}
	rule := Rule{Scope: ScopeTenant, Tenant: b("acme"), At: 1_700_000_000}
	kept, err := Publish(ctx, redis.addr(), "revocations", rule, WithoutTrim())
	if err != nil {
		t.Fatal(err)
	}
	if ids := redis.streamIDs("revocations"); len(ids) != 2 || ids[0] != "1000-0" || ids[1] != kept {
		t.Fatalf("without trimming: %v", ids)
	}
	last, err := Publish(ctx, redis.addr(), "revocations", rule, WithTrim(time.Hour, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// Exact trimming drops the old entry even in a stream this small (MINID ~ would not).
	if ids := redis.streamIDs("revocations"); len(ids) != 2 || ids[0] != kept || ids[1] != last {
		t.Errorf("trimmed by age: %v, want [%s %s]", ids, kept, last)
	}
	// The default trims too (a day and five minutes).
	redis.mustDo("XADD", "other", "2000-0", "scope", "global", "at", "5")
	id, err := Publish(ctx, redis.addr(), "other", rule)
	if err != nil {
		t.Fatal(err)
	}
	if ids := redis.streamIDs("other"); len(ids) != 1 || ids[0] != id {
		t.Errorf("default trimming: %v, want [%s]", ids, id)
	}
}

// A password and a database in the address, errors from Redis, a Publisher that
// outlives a Redis restart, and a cancelled context.
func TestPublisherAuthDatabaseAndRestart(t *testing.T) {
	redis := startRedis(t, "--requirepass", "s3cret")
	url := fmt.Sprintf("redis://:s3cret@%s/3", redis.addr())
	path := filepath.Join(t.TempDir(), "host.ledger")
	startSync(t, url, "revocations", path)
	gw := readerOf(t, path)
	ctx := context.Background()

	rule := func(sub string) Rule {
		return Rule{Scope: ScopeSubject, Tenant: b("acme"), Key: b(sub), At: 1_700_000_000}
	}
	revoked := func(sub string) bool {
		return mustCheck(t, gw, &Token{Tenant: b("acme"), Subject: b(sub), IssuedAt: 1_699_999_999}).Revoked
	}
	p, err := NewPublisher(url, "revocations")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Publish(ctx, rule("john")); err != nil {
		t.Fatalf("Publish with password and db 3: %v", err)
	}
	waitUntil(t, "sync (on db 3) applies john's rule", func() bool { return revoked("john") })
	if got := redis.mustDo("AUTH", "s3cret"); got != "OK" {
		t.Fatalf("AUTH: %v", got)
	}

	var re *RedisError
	_, err = Publish(ctx, "redis://:wrong@"+redis.addr()+"/3", "revocations", rule("x"))
	if !errors.As(err, &re) || !strings.Contains(re.Message, "WRONGPASS") || !strings.Contains(err.Error(), "AUTH") {
		t.Errorf("wrong password: %v", err)
	}
	// (Redis refuses the XADD of a client that has not authenticated: NOAUTH, or a
	// protocol error for a command of more than 10 arguments.)
	_, err = Publish(ctx, redis.addr(), "revocations", rule("x"))
	if !errors.As(err, &re) || !strings.Contains(strings.ToLower(re.Message), "auth") {
		t.Errorf("no password: %v", err)
	}

	// Redis restarts (empty, no persistence): the Publisher's connection is dead; the
	// next publish connects again, and sync, finding the stream recreated, reads it from
	// its beginning.
	redis.restart()
	if _, err := p.Publish(ctx, rule("mike")); err != nil {
		t.Fatalf("Publish after a Redis restart: %v", err)
	}
	waitUntil(t, "sync applies mike's rule after the restart", func() bool { return revoked("mike") })

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.Publish(cancelled, rule("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := p.Publish(ctx, rule("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}
