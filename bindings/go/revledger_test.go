package revledger

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func b(s string) []byte { return []byte(s) }

func openWriter(t testing.TB) (*Ledger, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.ledger")
	l, err := Open(path, time.Hour)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l, path
}

func openReader(t testing.TB, path string) *Ledger {
	t.Helper()
	l, err := OpenReader(path)
	if err != nil {
		t.Fatalf("OpenReader: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func mustRevoke(t testing.TB, l *Ledger, s Scope, tenant, key string, at int64) {
	t.Helper()
	if err := l.Revoke(s, b(tenant), b(key), at); err != nil {
		t.Fatalf("Revoke(%v, %q, %q, %d): %v", s, tenant, key, at, err)
	}
}

func mustCheck(t testing.TB, l *Ledger, tok *Token) Verdict {
	t.Helper()
	v, err := l.Check(tok)
	if err != nil {
		t.Fatalf("Check(%+v): %v", tok, err)
	}
	return v
}

func wantStatus(t *testing.T, err error, sentinel error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want %v", sentinel)
	}
	if !errors.Is(err, sentinel) {
		t.Fatalf("got %v, want %v", err, sentinel)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%v is not a *Error", err)
	}
}

// §1: super_admin's permissions change. John and Mike hold it, Bruce does not: only
// John's and Mike's tokens go; their refreshed tokens are fine.
func TestDesignScenarioSuperAdmin(t *testing.T) {
	w, path := openWriter(t)
	gateway := openReader(t, path) // another "process" on the host
	issued := time.Now().Unix() - 60
	john := &Token{Tenant: b("acme"), Subject: b("john"), Roles: [][]byte{b("super_admin"), b("billing")}, Client: b("spa"), IssuedAt: issued}
	mike := &Token{Tenant: b("acme"), Subject: b("mike"), Roles: [][]byte{b("super_admin")}, IssuedAt: issued}
	bruce := &Token{Tenant: b("acme"), Subject: b("bruce"), Roles: [][]byte{b("viewer"), b("billing")}, IssuedAt: issued}

	for _, tok := range []*Token{john, mike, bruce} {
		if v := mustCheck(t, gateway, tok); v.Revoked {
			t.Fatalf("%s revoked before any change: %v", tok.Subject, v)
		}
	}
	before := time.Now().Unix()
	cutoff, err := w.RevokeNow(ScopeRole, b("acme"), b("super_admin"))
	if err != nil {
		t.Fatal(err)
	}
	if cutoff <= before {
		t.Fatalf("RevokeNow cutoff %d is not after the current second %d (must round up)", cutoff, before)
	}
	want := Verdict{Revoked: true, Scope: ScopeRole, Cutoff: cutoff}
	for _, l := range []*Ledger{w, gateway} {
		if v := mustCheck(t, l, john); v != want {
			t.Errorf("john: %v, want %v", v, want)
		}
		if v := mustCheck(t, l, mike); v != want {
			t.Errorf("mike: %v, want %v", v, want)
		}
		if v := mustCheck(t, l, bruce); v.Revoked {
			t.Errorf("bruce: %v, want valid", v)
		}
	}
	// Issued in the second of the change: still before it (fail closed).
	sameSecond := *john
	sameSecond.IssuedAt = cutoff - 1
	if v := mustCheck(t, gateway, &sameSecond); !v.Revoked {
		t.Errorf("a token issued in the second of the change must be revoked")
	}
	// After the 401 the client refreshes: the new token has iat >= cutoff.
	for _, tok := range []*Token{john, mike} {
		fresh := *tok
		fresh.IssuedAt = cutoff
		if v := mustCheck(t, gateway, &fresh); v.Revoked {
			t.Errorf("%s's refreshed token: %v, want valid", tok.Subject, v)
		}
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
}

func TestEveryScope(t *testing.T) {
	const cut = 5000
	base := Token{Tenant: b("acme"), Subject: b("u"), Roles: [][]byte{b("r")}, Client: b("c"), Session: b("s"), TokenID: b("j"), IssuedAt: cut - 1}
	cases := []struct {
		scope       Scope
		tenant, key string
		at          int64
		hit         func(*Token) // makes base match the rule
		miss        func(*Token) // makes it miss (other key or tenant)
	}{
		{ScopeGlobal, "", "", cut, func(*Token) {}, func(t *Token) { t.IssuedAt = cut }},
		{ScopeTenant, "acme", "", cut, func(*Token) {}, func(t *Token) { t.Tenant = b("other") }},
		{ScopeSubject, "acme", "john", cut, func(t *Token) { t.Subject = b("john") }, func(*Token) {}},
		{ScopeRole, "acme", "admin", cut, func(t *Token) { t.Roles = [][]byte{b("x"), b("admin")} }, func(t *Token) { t.Roles = nil }},
		{ScopeClient, "acme", "spa", cut, func(t *Token) { t.Client = b("spa") }, func(*Token) {}},
		{ScopeSession, "acme", "sid-9", cut, func(t *Token) { t.Session = b("sid-9") }, func(*Token) {}},
		{ScopeToken, "acme", "jti-7", 99999, func(t *Token) { t.TokenID = b("jti-7"); t.IssuedAt = 1 << 40 }, func(t *Token) { t.TokenID = b("jti-8") }},
	}
	for _, c := range cases {
		c := c
		t.Run(c.scope.String(), func(t *testing.T) {
			w, path := openWriter(t)
			mustRevoke(t, w, c.scope, c.tenant, c.key, c.at)
			r := openReader(t, path)
			hit, miss := base, base
			c.hit(&hit)
			c.miss(&miss)
			want := Verdict{Revoked: true, Scope: c.scope, Cutoff: c.at}
			for _, l := range []*Ledger{w, r} {
				if v := mustCheck(t, l, &hit); v != want {
					t.Errorf("hit: %v, want %v", v, want)
				}
				if v := mustCheck(t, l, &miss); v.Revoked {
					t.Errorf("miss: %v, want valid", v)
				}
				if c.scope != ScopeToken {
					late := hit
					late.IssuedAt = c.at
					if v := mustCheck(t, l, &late); v.Revoked {
						t.Errorf("iat == cutoff: %v, want valid (strict)", v)
					}
				}
			}
			if got := c.scope.String(); got != scopeNames[c.scope] {
				t.Errorf("String() = %q", got)
			}
			if s, err := ParseScope(c.scope.String()); err != nil || s != c.scope {
				t.Errorf("ParseScope(%q) = %v, %v", c.scope.String(), s, err)
			}
		})
	}
}

func TestManyRoles(t *testing.T) {
	w, _ := openWriter(t)
	mustRevoke(t, w, ScopeRole, "acme", "r7", 3000)
	mustRevoke(t, w, ScopeRole, "acme", "r40", 4000)
	for _, n := range []int{0, 1, 3, 4, 5, 8, 31, 32, 33, 41, 200, MaxRoles} {
		roles := make([][]byte, n)
		for i := range roles {
			roles[i] = b("r" + strconv.Itoa(i))
		}
		if n > 2 {
			roles[1] = nil // an empty role among others
		}
		v := mustCheck(t, w, &Token{Tenant: b("acme"), Subject: b("u"), Roles: roles, IssuedAt: 10})
		var want Verdict
		switch {
		case n > 40:
			want = Verdict{true, ScopeRole, 4000}
		case n > 7:
			want = Verdict{true, ScopeRole, 3000}
		}
		if v != want {
			t.Errorf("%d roles: %v, want %v", n, v, want)
		}
	}
	_, err := w.Check(&Token{Tenant: b("acme"), Roles: make([][]byte, MaxRoles+1)})
	wantStatus(t, err, ErrInvalidArgument)
	if !strings.Contains(err.Error(), "4097") {
		t.Errorf("message does not say how many roles: %v", err)
	}
	long := [][]byte{b("a"), b("b"), b("c"), b("d"), bytes.Repeat(b("x"), MaxKeyLen+1)}
	_, err = w.Check(&Token{Tenant: b("acme"), Roles: long})
	wantStatus(t, err, ErrInvalidArgument)
}

func TestRevokeBatchAndSync(t *testing.T) {
	w, path := openWriter(t)
	rules := []Rule{
		{Scope: ScopeSubject, Tenant: b("acme"), Key: b("john"), At: 100},
		{Scope: ScopeTenant, Tenant: b("beta"), At: 200},
		{Scope: ScopeGlobal, At: 50},
		{Scope: ScopeToken, Tenant: b("acme"), Key: b("jti-1"), At: 999},
	}
	if err := w.RevokeBatch(rules); err != nil {
		t.Fatal(err)
	}
	if err := w.RevokeBatch(nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	r := openReader(t, path)
	checks := []struct {
		tok  Token
		want Verdict
	}{
		{Token{Tenant: b("acme"), Subject: b("john"), IssuedAt: 99}, Verdict{true, ScopeSubject, 100}},
		{Token{Tenant: b("beta"), Subject: b("x"), IssuedAt: 150}, Verdict{true, ScopeTenant, 200}},
		{Token{Tenant: b("gamma"), IssuedAt: 49}, Verdict{true, ScopeGlobal, 50}},
		{Token{Tenant: b("acme"), TokenID: b("jti-1"), IssuedAt: 5000}, Verdict{true, ScopeToken, 999}},
		{Token{Tenant: b("acme"), Subject: b("mike"), IssuedAt: 99}, Verdict{}},
	}
	for _, c := range checks {
		c := c
		if v := mustCheck(t, r, &c.tok); v != c.want {
			t.Errorf("%+v: %v, want %v", c.tok, v, c.want)
		}
	}

	// All or nothing: one bad rule refuses the whole batch.
	bad := []Rule{
		{Scope: ScopeSubject, Tenant: b("acme"), Key: b("mike"), At: 100},
		{Scope: ScopeSubject, Tenant: b("acme"), Key: bytes.Repeat(b("k"), MaxKeyLen+1), At: 100},
	}
	err := w.RevokeBatch(bad)
	wantStatus(t, err, ErrInvalidArgument)
	if !strings.Contains(err.Error(), "rule 1") {
		t.Errorf("message does not name the bad rule: %v", err)
	}
	err = w.RevokeBatch([]Rule{{Scope: Scope(9), Tenant: b("a"), Key: b("k"), At: 1}})
	wantStatus(t, err, ErrInvalidArgument)
	if v := mustCheck(t, r, &Token{Tenant: b("acme"), Subject: b("mike"), IssuedAt: 99}); v.Revoked {
		t.Errorf("a refused batch changed the ledger: %v", v)
	}
	st, err := w.Stats(1000)
	if err != nil {
		t.Fatal(err)
	}
	if st.RuleRecords != 4 || st.LiveKeys != 4 {
		t.Errorf("stats after a refused batch: %+v, want 4 records, 4 keys", st)
	}
}

func TestCompactAndStats(t *testing.T) {
	w, path := openWriter(t)
	r := openReader(t, path)
	mustRevoke(t, w, ScopeSubject, "acme", "old", 1000)
	mustRevoke(t, w, ScopeSubject, "acme", "old", 900) // a lower duplicate
	now := time.Now().Unix()
	mustRevoke(t, w, ScopeSubject, "acme", "recent", now)
	st, err := w.Stats(now)
	if err != nil {
		t.Fatal(err)
	}
	if st.RuleRecords != 3 || st.LiveKeys != 2 || st.ExpiredKeys != 1 {
		t.Errorf("stats: %+v", st)
	}
	if st.MaxTokenLifetime != time.Hour || st.Leeway <= 0 || st.LogBytes == 0 || st.FileBytes < st.LogBytes {
		t.Errorf("stats: %+v", st)
	}
	if err := w.Compact(now); err != nil {
		t.Fatal(err)
	}
	st, err = r.Stats(now) // the reader follows the swap
	if err != nil {
		t.Fatal(err)
	}
	if st.LiveKeys != 1 || st.RuleRecords != 1 {
		t.Errorf("reader stats after compaction: %+v", st)
	}
	recent := &Token{Tenant: b("acme"), Subject: b("recent"), IssuedAt: now - 1}
	for _, l := range []*Ledger{w, r} {
		if v := mustCheck(t, l, recent); v != (Verdict{true, ScopeSubject, now}) {
			t.Errorf("after compaction: %v", v)
		}
	}
	// Revokes after the swap reach the reader too.
	mustRevoke(t, w, ScopeSubject, "acme", "later", now+10)
	if v := mustCheck(t, r, &Token{Tenant: b("acme"), Subject: b("later"), IssuedAt: now}); !v.Revoked {
		t.Errorf("reader missed a revoke after compaction")
	}
	err = r.Compact(now)
	wantStatus(t, err, ErrReadOnly)
	if err := r.Refresh(); err != nil {
		t.Fatal(err)
	}
}

func TestBoundaryErrors(t *testing.T) {
	w, path := openWriter(t)
	long := bytes.Repeat(b("x"), MaxKeyLen+1)
	max := bytes.Repeat(b("x"), MaxKeyLen)

	t.Run("over-long keys", func(t *testing.T) {
		err := w.Revoke(ScopeSubject, b("acme"), long, 1)
		wantStatus(t, err, ErrInvalidArgument)
		if !strings.Contains(err.Error(), "4097") {
			t.Errorf("message: %v", err)
		}
		wantStatus(t, w.Revoke(ScopeSubject, long, b("john"), 1), ErrInvalidArgument)
		if err := w.Revoke(ScopeSubject, max, max, 1); err != nil {
			t.Errorf("keys of exactly MaxKeyLen: %v", err)
		}
		for _, tok := range []Token{
			{Tenant: long}, {Subject: long}, {Client: long}, {Session: long}, {TokenID: long},
			{Roles: [][]byte{long}},
		} {
			tok := tok
			_, err := w.Check(&tok)
			wantStatus(t, err, ErrInvalidArgument)
		}
		_, err = w.RevokeNow(ScopeSubject, b("acme"), long)
		wantStatus(t, err, ErrInvalidArgument)
	})
	t.Run("out-of-range scope", func(t *testing.T) {
		for _, s := range []Scope{7, 8, 255, 256, 1<<32 - 1} {
			err := w.Revoke(s, b("acme"), b("john"), 1)
			wantStatus(t, err, ErrInvalidArgument)
			if !strings.Contains(err.Error(), strconv.FormatUint(uint64(s), 10)) {
				t.Errorf("message does not name scope %d: %v", s, err)
			}
			_, err = w.RevokeNow(s, b("acme"), b("john"))
			wantStatus(t, err, ErrInvalidArgument)
		}
		if _, err := ParseScope("nope"); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ParseScope: %v", err)
		}
		if s := Scope(7).String(); s != "Scope(7)" {
			t.Errorf("Scope(7).String() = %q", s)
		}
	})
	t.Run("misshapen rules", func(t *testing.T) {
		wantStatus(t, w.Revoke(ScopeSubject, b("acme"), nil, 1), ErrInvalidArgument)
		wantStatus(t, w.Revoke(ScopeGlobal, b("acme"), nil, 1), ErrInvalidArgument)
		wantStatus(t, w.Revoke(ScopeTenant, b("acme"), b("k"), 1), ErrInvalidArgument)
		_, err := w.RevokeNow(ScopeToken, b("acme"), b("jti"))
		wantStatus(t, err, ErrInvalidArgument)
		_, err = w.Check(nil)
		wantStatus(t, err, ErrInvalidArgument)
	})
	t.Run("reader revoke", func(t *testing.T) {
		r := openReader(t, path)
		wantStatus(t, r.Revoke(ScopeSubject, b("acme"), b("john"), 1), ErrReadOnly)
		_, err := r.RevokeNow(ScopeSubject, b("acme"), b("john"))
		wantStatus(t, err, ErrReadOnly)
		wantStatus(t, r.RevokeBatch([]Rule{{ScopeGlobal, nil, nil, 1}}), ErrReadOnly)
		wantStatus(t, r.Sync(), ErrReadOnly)
	})
	t.Run("second writer", func(t *testing.T) {
		_, err := Open(path, time.Hour)
		wantStatus(t, err, ErrLocked)
		if !strings.Contains(err.Error(), "locked") {
			t.Errorf("message: %v", err)
		}
	})
	t.Run("non-ledger file", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "not-a-ledger")
		if err := os.WriteFile(p, bytes.Repeat(b("this is not a revledger file\n"), 200), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := OpenReader(p)
		wantStatus(t, err, ErrIncompatible)
		_, err = Open(p, time.Hour)
		wantStatus(t, err, ErrIncompatible)
	})
	t.Run("missing file and bad paths", func(t *testing.T) {
		_, err := OpenReader(filepath.Join(t.TempDir(), "missing"))
		wantStatus(t, err, ErrIO)
		_, err = Open("bad\x00path", time.Hour)
		wantStatus(t, err, ErrInvalidArgument)
		_, err = Open(filepath.Join(t.TempDir(), "neg"), -time.Second)
		wantStatus(t, err, ErrInvalidArgument)
	})
	t.Run("lifetime", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "lifetime")
		l, err := Open(p, 90*time.Minute+time.Millisecond) // rounds up to 5401 s
		if err != nil {
			t.Fatal(err)
		}
		st, _ := l.Stats(0)
		l.Close()
		if st.MaxTokenLifetime != 5401*time.Second {
			t.Errorf("lifetime %v, want 5401s", st.MaxTokenLifetime)
		}
		_, err = Open(p, time.Hour)
		wantStatus(t, err, ErrInvalidArgument) // smaller than recorded
		l, err = Open(p, 0)                    // keeps it
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
	})
}

func TestUseAfterClose(t *testing.T) {
	w, path := openWriter(t)
	r := openReader(t, path)
	mustRevoke(t, w, ScopeGlobal, "", "", 10)
	for _, l := range []*Ledger{w, r} {
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := l.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		_, err := l.Check(&Token{})
		wantStatus(t, err, ErrClosed)
		if err != ErrClosed || err.Error() != "revledger: ledger is closed" {
			t.Errorf("closed error: %v", err)
		}
		wantStatus(t, l.Revoke(ScopeGlobal, nil, nil, 1), ErrClosed)
		_, err = l.RevokeNow(ScopeGlobal, nil, nil)
		wantStatus(t, err, ErrClosed)
		wantStatus(t, l.RevokeBatch(nil), ErrClosed)
		wantStatus(t, l.RevokeBatch([]Rule{{ScopeGlobal, nil, nil, 1}}), ErrClosed)
		wantStatus(t, l.Sync(), ErrClosed)
		wantStatus(t, l.Refresh(), ErrClosed)
		wantStatus(t, l.Compact(0), ErrClosed)
		_, err = l.Stats(0)
		wantStatus(t, err, ErrClosed)
	}
	// The writer's lock is released by Close.
	w2, err := Open(path, 0)
	if err != nil {
		t.Fatalf("reopen after Close: %v", err)
	}
	defer w2.Close()
	if v := mustCheck(t, w2, &Token{IssuedAt: 9}); !v.Revoked {
		t.Errorf("record lost across Close: %v", v)
	}
}

func TestErrors(t *testing.T) {
	e := &Error{Status: StatusLocked, Message: "ledger x is locked by another writer"}
	if !errors.Is(e, ErrLocked) || errors.Is(e, ErrIO) || errors.Is(e, ErrClosed) {
		t.Error("errors.Is against sentinels")
	}
	if !errors.Is(fmt.Errorf("wrapped: %w", e), ErrLocked) {
		t.Error("errors.Is through wrapping")
	}
	if errors.Is(e, &Error{Status: StatusLocked, Message: "other"}) {
		t.Error("a target with another message must not match")
	}
	if e.Error() != "revledger: ledger x is locked by another writer" {
		t.Errorf("Error() = %q", e.Error())
	}
	if ErrCorrupt.Error() != "revledger: CORRUPT" {
		t.Errorf("sentinel Error() = %q", ErrCorrupt.Error())
	}
	// The Go names agree with the C library's.
	for s := StatusOK; s <= StatusInternal+1; s++ {
		c := cStatusName(s)
		if s <= StatusInternal && c != "REVLEDGER_"+s.String() {
			t.Errorf("status %d: Go %q, C %q", s, s.String(), c)
		}
		if s > StatusInternal && c != "unknown status" {
			t.Errorf("status %d: C %q", s, c)
		}
	}
	if StatusClosed.String() != "CLOSED" || Status(99).String() != "Status(99)" {
		t.Error("Status.String for non-C values")
	}
	if v := Version(); v == "" || strings.Count(v, ".") != 2 {
		t.Errorf("Version() = %q", v)
	}
}

// The message is thread-local in the C library: each goroutine must get the message of
// its own failed call, whichever OS thread it runs on.
func TestErrorMessagesAreNotMixedUpAcrossGoroutines(t *testing.T) {
	w, _ := openWriter(t)
	const goroutines, rounds = 8, 300
	var wg sync.WaitGroup
	errs := make(chan string, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			n := MaxKeyLen + 1 + g
			key := bytes.Repeat(b("k"), n)
			want := strconv.Itoa(n)
			for i := 0; i < rounds; i++ {
				var err error
				if i%2 == 0 {
					err = w.Revoke(ScopeSubject, b("t"), key, 1)
				} else {
					_, err = w.Check(&Token{Subject: key})
				}
				var e *Error
				if !errors.As(err, &e) || e.Status != StatusInvalidArgument || !strings.Contains(e.Message, want) {
					errs <- fmt.Sprintf("goroutine %d: got %v, want a message naming %s bytes", g, err, want)
					return
				}
				if i%16 == 0 {
					runtime.Gosched()
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// Many goroutines check (on the writer's handle and on a reader's) while one revokes:
// every revoke that returned is seen by every later check, verdicts never go back, and
// tokens outside the rules stay valid.
func TestConcurrentChecksWhileRevoking(t *testing.T) {
	w, path := openWriter(t)
	r := openReader(t, path)
	const users = 2000
	const checkers = 6
	var committed int64 // users [0, committed) are revoked and their revoke returned
	var wg sync.WaitGroup
	failures := make(chan string, checkers+1)
	fail := func(format string, args ...interface{}) {
		select {
		case failures <- fmt.Sprintf(format, args...):
		default:
		}
	}
	user := func(i int) []byte { return b("user-" + strconv.Itoa(i)) }

	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < users; i++ {
			var err error
			if i%10 == 9 {
				err = w.RevokeBatch([]Rule{{ScopeSubject, b("acme"), user(i), 2000}})
			} else {
				err = w.Revoke(ScopeSubject, b("acme"), user(i), 2000)
			}
			if err != nil {
				fail("revoke %d: %v", i, err)
				return
			}
			atomic.StoreInt64(&committed, int64(i+1))
		}
	}()
	for c := 0; c < checkers; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			l := w
			if c%2 == 1 {
				l = r
			}
			seen := make([]bool, users)
			tok := &Token{Tenant: b("acme"), Roles: [][]byte{b("viewer"), b("editor"), b("x")}, IssuedAt: 1000}
			for round := 0; ; round++ {
				done := atomic.LoadInt64(&committed)
				i := (round*7919 + c) % users
				tok.Subject = user(i)
				v, err := l.Check(tok)
				if err != nil {
					fail("checker %d: %v", c, err)
					return
				}
				if int64(i) < done && !v.Revoked {
					fail("checker %d: user %d revoked (committed %d) but checked valid", c, i, done)
					return
				}
				if seen[i] && !v.Revoked {
					fail("checker %d: user %d went back to valid", c, i)
					return
				}
				seen[i] = v.Revoked
				if v.Revoked && v != (Verdict{true, ScopeSubject, 2000}) {
					fail("checker %d: verdict %v", c, v)
					return
				}
				tok.Subject = b("outsider")
				if v, err := l.Check(tok); err != nil || v.Revoked {
					fail("checker %d: outsider %v %v", c, v, err)
					return
				}
				if done == users && round >= users {
					return
				}
			}
		}(c)
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	// A final full pass on a fresh reader.
	fresh := openReader(t, path)
	for i := 0; i < users; i++ {
		if v := mustCheck(t, fresh, &Token{Tenant: b("acme"), Subject: user(i), IssuedAt: 1999}); !v.Revoked {
			t.Fatalf("fresh reader: user %d valid", i)
		}
	}
}

// Close while other goroutines are checking: it waits for calls in flight, and every
// later call gets ErrClosed; nothing crashes.
func TestCloseWhileChecking(t *testing.T) {
	for _, writer := range []bool{true, false} {
		// Times near the clock: the writer revokes tens of thousands of times here, so its
		// background compaction runs, and it drops rules older than the token lifetime
		// (every token they cover has expired; DESIGN.md §2, Expiry).
		now := time.Now().Unix()
		w, path := openWriter(t)
		mustRevoke(t, w, ScopeRole, "acme", "admin", now)
		l := w
		if !writer {
			l = openReader(t, path)
		}
		const goroutines = 6
		var started, wg sync.WaitGroup
		started.Add(goroutines)
		errs := make(chan error, goroutines)
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				tok := &Token{Tenant: b("acme"), Roles: [][]byte{b("admin")}, IssuedAt: now - 10}
				first := true
				for {
					var v Verdict
					var err error
					if g == 0 && writer {
						err = l.Revoke(ScopeSubject, b("acme"), b("x"), now)
						v.Revoked = true
					} else {
						v, err = l.Check(tok)
					}
					if first {
						started.Done()
						first = false
					}
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil || !v.Revoked {
						errs <- fmt.Errorf("goroutine %d: %v %v", g, v, err)
						return
					}
				}
			}(g)
		}
		started.Wait()
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
}

// A Ledger dropped without Close is closed by its finalizer, releasing a writer's lock.
func TestFinalizerClosesTheHandle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "finalized.ledger")
	func() {
		l, err := Open(path, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		mustRevoke(t, l, ScopeGlobal, "", "", 10)
	}()
	var err error
	for i := 0; i < 1000; i++ {
		runtime.GC()
		runtime.Gosched()
		var l *Ledger
		if l, err = Open(path, 0); err == nil {
			defer l.Close()
			if v := mustCheck(t, l, &Token{IssuedAt: 1}); !v.Revoked {
				t.Errorf("record lost: %v", v)
			}
			return
		}
		if !errors.Is(err, ErrLocked) {
			t.Fatal(err)
		}
	}
	t.Fatalf("the finalizer never released the writer's lock: %v", err)
}

func TestVerdictText(t *testing.T) {
	cases := []struct {
		v          Verdict
		str, descr string
	}{
		{Verdict{}, "valid", "token is valid"},
		{Verdict{true, ScopeRole, 2000}, "revoked by role rule, cutoff 2000", "token revoked: role permissions changed at 2000"},
		{Verdict{true, ScopeToken, 99}, "revoked by token rule, exp 99", "token revoked: this token was revoked (token rule, exp 99)"},
	}
	for _, c := range cases {
		if c.v.String() != c.str || c.v.Description() != c.descr {
			t.Errorf("%+v: %q, %q", c.v, c.v.String(), c.v.Description())
		}
	}
}

// Check of a token with up to four roles does not allocate.
func TestCheckDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates and drops sync.Pool items on purpose")
	}
	w, _ := openWriter(t)
	mustRevoke(t, w, ScopeRole, "acme", "admin", 100)
	valid := &Token{Tenant: b("acme"), Subject: b("john"), Roles: [][]byte{b("a"), b("b"), b("c"), b("d")}, Client: b("spa"), Session: b("s"), TokenID: b("j"), IssuedAt: 500}
	revoked := &Token{Tenant: b("acme"), Subject: b("john"), Roles: [][]byte{b("admin")}, IssuedAt: 50}
	many := &Token{Tenant: b("acme"), Subject: b("john"), Roles: [][]byte{b("a"), b("b"), b("c"), b("d"), b("e"), b("admin")}, IssuedAt: 50}
	for _, tok := range []*Token{valid, revoked, many} {
		mustCheck(t, w, tok) // warm the pool
		allocs := testing.AllocsPerRun(200, func() {
			if _, err := w.Check(tok); err != nil {
				t.Fatal(err)
			}
		})
		// More than four roles go through a sync.Pool, which a GC may empty.
		if (len(tok.Roles) <= 4 && allocs != 0) || allocs >= 1 {
			t.Errorf("Check with %d roles: %v allocations per call", len(tok.Roles), allocs)
		}
	}
}
