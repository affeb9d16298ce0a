package revledger

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// unsignedJWT is header.payload.signature with a fake signature: CheckJWT does not
// verify signatures (the golangjwt subpackage's tests use real ones).
func unsignedJWT(payload string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"RS256"}`)) + "." + enc.EncodeToString([]byte(payload)) + ".c2ln"
}

func openPair(t *testing.T) (*Ledger, *Ledger) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "l")
	w, err := Open(path, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return w, r
}

func TestNewClaimsBuiltinsAndPointerSpecs(t *testing.T) {
	for _, spec := range []string{SpecGeneric, SpecAuth0, SpecKeycloak, SpecEntra, `{"subject":["/sub"]}`} {
		c, err := NewClaims(spec)
		if err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		if c.Spec() != spec {
			t.Errorf("Spec() = %q", c.Spec())
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
	for spec, want := range map[string]string{
		"okta":                   `unknown claim mapping "okta"`,
		`{"subject":["sub"]}`:    "must start with '/'",
		`{"roles":["/a/*/b/*"]}`: "more than one '*'",
		"generic\x00":            "NUL byte",
	} {
		_, err := NewClaims(spec)
		if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), want) {
			t.Errorf("NewClaims(%q) = %v, want ErrInvalidArgument with %q", spec, err, want)
		}
	}
}

func TestCheckClaimsAndCheckJWT(t *testing.T) {
	w, r := openPair(t)
	kc, err := NewClaims(SpecKeycloak)
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	now := time.Now().Unix()
	payload := fmt.Sprintf(`{"iss":"https://sso/realms/acme","sub":"john","iat":%d,
		"realm_access":{"roles":["a:b"]},"resource_access":{"billing-api":{"roles":["refund"]}}}`, now-10)
	jwt := unsignedJWT(payload)
	for _, check := range []func() (Verdict, error){
		func() (Verdict, error) { return r.CheckClaims(kc, []byte(payload)) },
		func() (Verdict, error) { return r.CheckJWT(kc, jwt) },
	} {
		if v, err := check(); err != nil || v.Revoked {
			t.Fatalf("before any rule: %v, %v", v, err)
		}
	}
	// The client role's key form; the realm role "a:b" is keyed "a%3Ab" and stays apart.
	if err := w.Revoke(ScopeRole, []byte("https://sso/realms/acme"), []byte("billing-api:refund"), now-5); err != nil {
		t.Fatal(err)
	}
	want := Verdict{Revoked: true, Scope: ScopeRole, Cutoff: now - 5}
	if v, err := r.CheckJWT(kc, jwt); err != nil || v != want {
		t.Fatalf("CheckJWT = %v, %v; want %v", v, err, want)
	}
	if v, err := r.CheckClaims(kc, []byte(payload)); err != nil || v != want {
		t.Fatalf("CheckClaims = %v, %v; want %v", v, err, want)
	}
	generic, _ := NewClaims(SpecGeneric)
	defer generic.Close()
	if v, err := r.CheckJWT(generic, jwt); err != nil || v.Revoked {
		t.Fatalf("generic reads no tenant from iss: %v, %v", v, err)
	}
}

func TestCheckJWTRefusesUnreadableTokensNamingTheClaim(t *testing.T) {
	_, r := openPair(t)
	c, _ := NewClaims(SpecGeneric)
	defer c.Close()
	for _, tc := range []struct{ jwt, want string }{
		{unsignedJWT(`{"sub":"x"}`), `no "iat"`},
		{unsignedJWT(`{"iat":1,"sub":7}`), `claim "sub" must be a string`},
		{unsignedJWT(`[1]`), "must be a JSON object"},
		{"a.b!.c", "not base64url"},
		{"a.b", "not a compact JWS"},
		{"", "empty"},
	} {
		_, err := r.CheckJWT(c, tc.jwt)
		if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckJWT(%q) = %v, want ErrInvalidArgument with %q", tc.jwt, err, tc.want)
		}
	}
	if _, err := r.CheckClaims(c, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("CheckClaims(nil) = %v", err)
	}
	if _, err := r.CheckClaims(nil, []byte(`{"iat":1}`)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("nil mapping: %v", err)
	}
}

func TestClosedClaimsAndLedgersAreErrClosed(t *testing.T) {
	_, r := openPair(t)
	c, _ := NewClaims(SpecGeneric)
	jwt := unsignedJWT(`{"sub":"x","iat":1}`)
	if _, err := r.CheckJWT(c, jwt); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := r.CheckJWT(c, jwt); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Claims.Close: %v", err)
	}
	c2, _ := NewClaims(SpecGeneric)
	defer c2.Close()
	r.Close()
	if _, err := r.CheckJWT(c2, jwt); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Ledger.Close: %v", err)
	}
}

// One mapping shared by goroutines while another closes it: every check either answers
// or says ErrClosed, never crashes (`go test -race` checks the locking).
func TestClaimsCloseWaitsForChecksInFlight(t *testing.T) {
	_, r := openPair(t)
	c, _ := NewClaims(SpecEntra)
	jwt := unsignedJWT(fmt.Sprintf(`{"tid":"t","oid":"o","roles":["a","b","c","d","e"],"iat":%d}`, time.Now().Unix()-5))
	var wg sync.WaitGroup
	var answered, closed atomic.Int64
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200000; i++ {
				_, err := r.CheckJWT(c, jwt)
				switch {
				case err == nil:
					answered.Add(1)
				case errors.Is(err, ErrClosed):
					closed.Add(1)
					return
				default:
					t.Errorf("CheckJWT: %v", err)
					return
				}
			}
		}()
	}
	// Close while the checks run: once some have answered.
	deadline := time.Now().Add(10 * time.Second)
	for answered.Load() == 0 && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	c.Close()
	wg.Wait()
	if answered.Load() == 0 {
		t.Fatal("no check answered before the deadline")
	}
	if closed.Load() == 0 {
		t.Log("every goroutine finished before Close (a slow machine); the close still succeeded")
	}
	if _, err := r.CheckJWT(c, jwt); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestCheckJWTDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	_, r := openPair(t)
	c, _ := NewClaims(SpecKeycloak)
	defer c.Close()
	jwt := unsignedJWT(fmt.Sprintf(`{"iss":"i","sub":"s","iat":%d,"realm_access":{"roles":["a","b"]},"scope":"x y"}`, time.Now().Unix()))
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := r.CheckJWT(c, jwt); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("CheckJWT allocates %v times per call", allocs)
	}
}

func TestClaimsMiddleware(t *testing.T) {
	w, r := openPair(t)
	c, _ := NewClaims(SpecGeneric)
	defer c.Close()
	now := time.Now().Unix()
	payloadFromHeader := func(req *http.Request) ([]byte, error) {
		p := req.Header.Get("X-Payload")
		if p == "" {
			return nil, ErrNoToken
		}
		return []byte(p), nil
	}
	next, served := okHandler()
	h := ClaimsMiddleware(next, r, c, payloadFromHeader)
	serveP := func(payload string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/", nil)
		if payload != "" {
			req.Header.Set("X-Payload", payload)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	john := fmt.Sprintf(`{"tid":"acme","sub":"john","roles":["admin"],"iat":%d}`, now-10)
	if rec := serveP(john); rec.Code != 200 || *served != 1 {
		t.Fatalf("valid: %d, served %d", rec.Code, *served)
	}
	if err := w.Revoke(ScopeRole, []byte("acme"), []byte("admin"), now-5); err != nil {
		t.Fatal(err)
	}
	rec := serveP(john)
	if rec.Code != 401 || !strings.Contains(rec.Header().Get("WWW-Authenticate"), `error="invalid_token", error_description="token revoked: role permissions changed at`) {
		t.Fatalf("revoked: %d %q", rec.Code, rec.Header().Get("WWW-Authenticate"))
	}
	rec = serveP(`{"tid":"acme","sub":5,"iat":1}`)
	if rec.Code != 401 || !strings.Contains(rec.Header().Get("WWW-Authenticate"), "could not be read") {
		t.Fatalf("unreadable claims: %d %q", rec.Code, rec.Header().Get("WWW-Authenticate"))
	}
	if rec = serveP(""); rec.Code != 200 || *served != 2 {
		t.Fatalf("no token: %d, served %d (passed on to next)", rec.Code, *served)
	}
	r.Close()
	if rec = serveP(john); rec.Code != 503 {
		t.Fatalf("closed ledger: %d", rec.Code)
	}
	if *served != 2 {
		t.Fatalf("served %d requests, want 2", *served)
	}
}

// BenchmarkCheckJWT: a Keycloak-shaped token with 10 entitlements through CheckJWT
// (decode + map + check in one cgo call), beside BenchmarkCheck's figures.
func BenchmarkCheckJWT(b *testing.B) {
	path := filepath.Join(b.TempDir(), "l")
	w, err := Open(path, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	c, _ := NewClaims(SpecKeycloak)
	defer c.Close()
	jwt := unsignedJWT(fmt.Sprintf(`{"exp":%d,"iat":%d,"jti":"5e2a8b3c-0f7d-4c1e-9b1a-2d3e4f5a6b7c",
		"iss":"https://sso.example.com/realms/acme","aud":["billing-api","account"],
		"sub":"f1b5b1c0-1234-4e6f-9a0b-c1d2e3f4a5b6","typ":"Bearer","azp":"web-app",
		"realm_access":{"roles":["offline_access","uma_authorization","default-roles-acme","billing-admin"]},
		"resource_access":{"billing-api":{"roles":["refund","view"]},"account":{"roles":["manage-account","view-profile"]}},
		"scope":"openid","sid":"0a6c2f1e-aaaa-bbbb-cccc-1234567890ab","groups":["/acme/admins"],
		"email_verified":true,"name":"John Doe","preferred_username":"john"}`, time.Now().Unix()+3600, time.Now().Unix()-60))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := w.CheckJWT(c, jwt); err != nil {
			b.Fatal(err)
		}
	}
}
