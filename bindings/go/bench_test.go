package revledger

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// benchLedger is a writer holding 10k rules across scopes, and a valid token with three
// roles (the common case of DESIGN.md §5), checked through cgo. The token is issued
// before every rule's cutoff and none of its keys has a rule, so every scope is probed
// (as in the Rust benchmarks: benches/check.rs).
func benchLedger(b *testing.B) (*Ledger, *Token) {
	b.Helper()
	l, err := Open(filepath.Join(b.TempDir(), "bench.ledger"), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	scopes := []Scope{ScopeSubject, ScopeRole, ScopeClient, ScopeSession, ScopeToken}
	rules := make([]Rule, 0, 10000)
	for i := 0; i < 10000; i++ {
		rules = append(rules, Rule{
			Scope:  scopes[i%len(scopes)],
			Tenant: []byte("tenant-" + strconv.Itoa(i%50)),
			Key:    []byte("key-" + strconv.Itoa(i)),
			At:     1_700_000_000 + int64(i),
		})
	}
	if err := l.RevokeBatch(rules); err != nil {
		b.Fatal(err)
	}
	tok := &Token{
		Tenant:   []byte("tenant-7"),
		Subject:  []byte("user-12345@example.com"),
		Roles:    [][]byte{[]byte("viewer"), []byte("billing"), []byte("support")},
		Client:   []byte("spa-client"),
		Session:  []byte("sid-0a1b2c3d"),
		TokenID:  []byte("jti-9f8e7d6c"),
		IssuedAt: 1_699_999_999,
	}
	v, err := l.Check(tok)
	if err != nil || v.Revoked {
		b.Fatalf("benchmark token: %v %v", v, err)
	}
	return l, tok
}

func BenchmarkCheck(b *testing.B) {
	l, tok := benchLedger(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := l.Check(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckParallel(b *testing.B) {
	l, tok := benchLedger(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Check(tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkCheckRevoked(b *testing.B) {
	l, tok := benchLedger(b)
	revoked := *tok
	revoked.Tenant = []byte("tenant-10")
	revoked.Subject = []byte("key-10") // a subject rule at 1_700_000_010
	revoked.IssuedAt = 1_600_000_000
	if v, err := l.Check(&revoked); err != nil || !v.Revoked {
		b.Fatalf("%v %v", v, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := l.Check(&revoked); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckEightRoles measures the path for more than four roles (copied for C).
func BenchmarkCheckEightRoles(b *testing.B) {
	l, tok := benchLedger(b)
	many := *tok
	for i := 0; i < 8; i++ {
		many.Roles = append(many.Roles[:len(many.Roles):len(many.Roles)], []byte("role-"+strconv.Itoa(i)))
	}
	many.Roles = many.Roles[3:]
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := l.Check(&many); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckInC is the same check looped inside one C call: the library's cost without the cgo transition, to compare with BenchmarkCheck
// in the same run.
func BenchmarkCheckInC(b *testing.B) {
	l, tok := benchLedger(b)
	b.ResetTimer()
	v, err := l.checkRepeatInC(b.N, tok)
	if err != nil || v.Revoked {
		b.Fatal(v, err)
	}
}

// BenchmarkCgoBaseline is the cost of the cgo call alone (revledger_version), for scale.
func BenchmarkCgoBaseline(b *testing.B) {
	for i := 0; i < b.N; i++ {
		cVersionPtr()
	}
}
