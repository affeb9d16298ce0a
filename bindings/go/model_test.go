package revledger

import (
	"errors"
	"math/rand"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// refModel is DESIGN.md §2 written plainly: the effective cutoff per (scope, tenant,
// key) is the maximum of its records.
type refModel map[string]int64

func refKey(s Scope, tenant, key []byte) string {
	return strconv.Itoa(int(s)) + "|" + strconv.Itoa(len(tenant)) + "|" + string(tenant) + "|" + string(key)
}

func (m refModel) add(r Rule) {
	k := refKey(r.Scope, r.Tenant, r.Key)
	if old, ok := m[k]; !ok || r.At > old {
		m[k] = r.At
	}
}

// Ties go to the most specific scope: Subject, Session, Client, Role, Tenant, Global.
var specificity = map[Scope]int{ScopeSubject: 6, ScopeSession: 5, ScopeClient: 4, ScopeRole: 3, ScopeTenant: 2, ScopeGlobal: 1}

func (m refModel) check(t *Token) Verdict {
	if len(t.TokenID) > 0 {
		if exp, ok := m[refKey(ScopeToken, t.Tenant, t.TokenID)]; ok {
			return Verdict{Revoked: true, Scope: ScopeToken, Cutoff: exp}
		}
	}
	var best Verdict
	consider := func(s Scope, tenant, key []byte) {
		if s != ScopeGlobal && s != ScopeTenant && len(key) == 0 {
			return
		}
		cut, ok := m[refKey(s, tenant, key)]
		if !ok || t.IssuedAt >= cut {
			return
		}
		if !best.Revoked || cut > best.Cutoff || (cut == best.Cutoff && specificity[s] > specificity[best.Scope]) {
			best = Verdict{Revoked: true, Scope: s, Cutoff: cut}
		}
	}
	consider(ScopeGlobal, nil, nil)
	consider(ScopeTenant, t.Tenant, nil)
	consider(ScopeSubject, t.Tenant, t.Subject)
	consider(ScopeClient, t.Tenant, t.Client)
	consider(ScopeSession, t.Tenant, t.Session)
	for _, r := range t.Roles {
		consider(ScopeRole, t.Tenant, r)
	}
	return best
}

// A ledger written from Go, in random order with duplicates, answers as the reference
// model does: on the writer, on a reader open beside it, and on a reader opened after
// the writer closed (the file alone). Times stay near now, so no rule has expired.
func TestAgainstReferenceModel(t *testing.T) {
	rng := rand.New(rand.NewSource(20240601))
	now := time.Now().Unix()
	pick := func(prefix string, n int) []byte {
		if rng.Intn(8) == 0 {
			return nil
		}
		return []byte(prefix + strconv.Itoa(rng.Intn(n)))
	}
	// Mostly keyed rules, so that every scope gets to decide some verdicts.
	weighted := []Scope{ScopeGlobal, ScopeTenant, ScopeTenant, ScopeToken, ScopeToken}
	for _, s := range []Scope{ScopeSubject, ScopeRole, ScopeClient, ScopeSession} {
		for i := 0; i < 8; i++ {
			weighted = append(weighted, s)
		}
	}
	named := map[Scope]int{} // how often each scope decided a verdict: every one must
	for round := 0; round < 4; round++ {
		path := filepath.Join(t.TempDir(), "model.ledger")
		w, err := Open(path, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		beside := openReader(t, path)
		model := refModel{}
		var batch []Rule
		for i := 0; i < 400; i++ {
			s := weighted[rng.Intn(len(weighted))]
			r := Rule{Scope: s, Tenant: pick("t", 3), Key: []byte("k" + strconv.Itoa(rng.Intn(6))), At: now - 1000 + rng.Int63n(2000)}
			switch s {
			case ScopeGlobal:
				r.Tenant, r.Key = nil, nil
				r.At = now - 1100 + rng.Int63n(300)
			case ScopeTenant:
				r.Key = nil
				r.At = now - 1100 + rng.Int63n(600)
			case ScopeToken:
				r.Key = []byte("j" + strconv.Itoa(rng.Intn(60)))
				r.At = now + rng.Int63n(2000)
			}
			model.add(r)
			if rng.Intn(3) == 0 {
				batch = append(batch, r)
				continue
			}
			if err := w.Revoke(r.Scope, r.Tenant, r.Key, r.At); err != nil {
				t.Fatalf("revoke %+v: %v", r, err)
			}
			if len(batch) > 5 {
				if err := w.RevokeBatch(batch); err != nil {
					t.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		if err := w.RevokeBatch(batch); err != nil {
			t.Fatal(err)
		}
		tokens := make([]Token, 1500)
		for i := range tokens {
			var roles [][]byte
			for n := rng.Intn(7); n > 0; n-- {
				roles = append(roles, []byte("k"+strconv.Itoa(rng.Intn(8))))
			}
			tokens[i] = Token{
				Tenant: pick("t", 4), Subject: pick("k", 8), Roles: roles,
				Client: pick("k", 8), Session: pick("k", 8), TokenID: pick("j", 100),
				IssuedAt: now - 1100 + rng.Int63n(2200),
			}
		}
		compare := func(what string, l *Ledger) {
			for i := range tokens {
				tok := &tokens[i]
				got, err := l.Check(tok)
				want := model.check(tok)
				// DESIGN.md §3, time sanity: a token issued more than the leeway (300 s)
				// after the clock is never "valid": an error unless a rule revokes it.
				future := tok.IssuedAt > time.Now().Unix()+300
				if future && !want.Revoked {
					if err == nil || !errors.Is(err, ErrInvalidArgument) {
						t.Fatalf("round %d, %s: %+v issued in the future: got %v, %v; want an error", round, what, *tok, got, err)
					}
					named[Scope(100)]++
					continue
				}
				if err != nil || got != want {
					t.Fatalf("round %d, %s: %+v: got %v, %v; want %v", round, what, *tok, got, err, want)
				}
				if want.Revoked {
					named[want.Scope]++
				} else {
					named[Scope(99)]++
				}
			}
		}
		compare("writer", w)
		compare("reader beside the writer", beside)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		compare("reader opened after close", openReader(t, path))
	}
	for _, s := range []Scope{ScopeGlobal, ScopeTenant, ScopeSubject, ScopeRole, ScopeClient, ScopeSession, ScopeToken, Scope(99)} {
		if named[s] == 0 {
			t.Errorf("no verdict named %v (valid is Scope(99)): the random cases are too narrow: %v", s, named)
		}
	}
	if named[Scope(100)] == 0 {
		t.Errorf("no token issued in the future was checked: %v", named)
	}
	t.Logf("verdicts by deciding scope (99 = valid, 100 = issued in the future): %v", named)
}
