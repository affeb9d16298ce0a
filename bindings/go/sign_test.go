package revledger

// Signed rules from Go and the degraded state (docs/SYNC.md §5): a Go publisher signs
// with an Ed25519 key; `revledger sync --trusted-keys` applies what that key may publish,
// refuses the rest, and marks the ledger degraded, which Freshness reports and the
// middleware's staleness check turns into 503.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSignedMessageLayout(t *testing.T) {
	got := SignedMessage("s", Rule{Scope: ScopeRole, Tenant: b("acme"), Key: b("admin"), At: -2})
	want := append([]byte("revledger-rule-v1\x00"), 1, 0, 0, 0, 's', 3, 4, 0, 0, 0)
	want = append(want, "acme"...)
	want = append(want, 5, 0, 0, 0)
	want = append(want, "admin"...)
	want = binary.LittleEndian.AppendUint64(want, ^uint64(1))
	if string(got) != string(want) {
		t.Fatalf("SignedMessage = %q, want %q", got, want)
	}
}

func TestSignedPublishAndADegradedLedger(t *testing.T) {
	redis := startRedis(t)
	dir := t.TempDir()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	keyPath := filepath.Join(dir, "logout.key")
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	loaded, err := LoadSigningKey(keyPath)
	if err != nil || !loaded.Equal(priv) {
		t.Fatalf("LoadSigningKey: %v", err)
	}
	trusted := filepath.Join(dir, "trusted")
	os.WriteFile(trusted, []byte("logout "+base64.StdEncoding.EncodeToString(pub)+" session,token\n"), 0o600)
	path := filepath.Join(dir, "host.ledger")
	startSync(t, "redis://"+redis.addr()+"/", "revocations", path, "--trusted-keys", trusted)
	gw := readerOf(t, path)
	ctx := context.Background()

	p, err := NewPublisher(redis.addr(), "revocations", WithSigningKey("logout", loaded))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Publish(ctx, Rule{Scope: ScopeSession, Tenant: b("acme"), Key: b("sid-1"), At: 100}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the signed session rule is applied", func() bool {
		return mustCheck(t, gw, &Token{Tenant: b("acme"), Subject: b("x"), Session: b("sid-1"), IssuedAt: 99}).Revoked
	})
	if f := mustFreshness(t, gw); f.IsDegraded() {
		t.Fatalf("degraded before any refusal: %+v", f)
	}

	// A healthy, fresh ledger lets a valid token through the middleware.
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	h := Middleware(api, gw, func(r *http.Request) (*Token, error) {
		return &Token{Tenant: b("acme"), Subject: b("bruce"), IssuedAt: 1}, nil
	}, WithMaxStaleness(time.Minute))
	serve := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		return rec
	}
	if rec := serve(); rec.Code != http.StatusNoContent {
		t.Fatalf("fresh ledger: %d %s", rec.Code, rec.Body)
	}

	// The logout key may not publish global: refused; the ledger is degraded.
	last, err := p.Publish(ctx, Rule{Scope: ScopeGlobal, At: 100})
	if err != nil {
		t.Fatal(err)
	}
	var f Freshness
	waitUntil(t, "the refusal marks the ledger degraded", func() bool {
		f = mustFreshness(t, gw)
		return f.LastID == last && f.IsDegraded()
	})
	if f.Degraded != DegradedRefused {
		t.Errorf("Degraded = %d, want %d", f.Degraded, DegradedRefused)
	}
	if mustCheck(t, gw, &Token{Tenant: b("acme"), Subject: b("bruce"), IssuedAt: 1}).Revoked {
		t.Fatal("the refused global rule was applied")
	}
	rec := serve()
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "degraded") {
		t.Errorf("degraded ledger: %d %q, want 503 saying degraded", rec.Code, rec.Body)
	}

	if _, err := NewPublisher(redis.addr(), "revocations", WithSigningKey("bad kid", loaded)); err == nil {
		t.Error("a key name with a space was accepted")
	}
	if _, err := LoadSigningKey(trusted); err == nil {
		t.Error("LoadSigningKey read a non-PEM file")
	}
}
