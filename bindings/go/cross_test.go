package revledger_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	revledger "github.com/revledger/revledger/bindings/go"
)

// The Rust CLI, built by `cargo build --release --bins` (scripts/test-all does it).
func cli(t *testing.T) string {
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

func exitCode(t *testing.T, name string, args ...string) int {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.ExitCode()
	default:
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		return -1
	}
}

// A ledger written from Go is read by the Rust CLI.
func TestGoWritesRustReads(t *testing.T) {
	bin := cli(t)
	path := filepath.Join(t.TempDir(), "go.ledger")
	w, err := revledger.Open(path, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Revoke(revledger.ScopeClient, []byte("acme"), []byte("spa"), 4000); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if c := exitCode(t, bin, "check", path, "--tenant", "acme", "--sub", "x", "--client", "spa", "--iat", "3999"); c != 1 {
		t.Fatalf("CLI says exit %d for a revoked token, want 1", c)
	}
	if c := exitCode(t, bin, "check", path, "--tenant", "acme", "--sub", "x", "--client", "spa", "--iat", "4000"); c != 0 {
		t.Fatalf("CLI says exit %d for a valid token, want 0", c)
	}
}

// A ledger written by the Rust CLI is read from Go.
func TestRustWritesGoReads(t *testing.T) {
	bin := cli(t)
	path := filepath.Join(t.TempDir(), "rust.ledger")
	if c := exitCode(t, bin, "create", path, "--max-token-lifetime", "3600"); c != 0 {
		t.Fatalf("create: exit %d", c)
	}
	if c := exitCode(t, bin, "revoke", path, "tenant", "--tenant", "acme", "--at", "6000"); c != 0 {
		t.Fatalf("revoke: exit %d", c)
	}
	r, err := revledger.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	v, err := r.Check(&revledger.Token{Tenant: []byte("acme"), Subject: []byte("anyone"), IssuedAt: 5999})
	if err != nil {
		t.Fatal(err)
	}
	if !v.Revoked || v.Scope != revledger.ScopeTenant || v.Cutoff != 6000 {
		t.Fatalf("got %v, want revoked by the tenant rule at 6000", v)
	}
	v, err = r.Check(&revledger.Token{Tenant: []byte("other"), Subject: []byte("anyone"), IssuedAt: 5999})
	if err != nil || v.Revoked {
		t.Fatalf("other tenant: %v %v, want valid", v, err)
	}
}
