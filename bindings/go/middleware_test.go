package revledger

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// claimsFromHeaders stands in for a JWT verifier: it reads already-verified claims from
// test headers.
func claimsFromHeaders(r *http.Request) (*Token, error) {
	sub := r.Header.Get("X-Sub")
	switch sub {
	case "":
		return nil, fmt.Errorf("no bearer token: %w", ErrNoToken)
	case "garbage":
		return nil, errors.New("signature does not verify")
	}
	var roles [][]byte
	if rs := r.Header.Get("X-Roles"); rs != "" {
		for _, role := range strings.Split(rs, ",") {
			roles = append(roles, []byte(role))
		}
	}
	var iat int64
	fmt.Sscan(r.Header.Get("X-Iat"), &iat)
	return &Token{Tenant: []byte("acme"), Subject: []byte(sub), Roles: roles, IssuedAt: iat}, nil
}

func serve(h http.Handler, sub, roles, iat string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/api/things", nil)
	if sub != "" {
		req.Header.Set("X-Sub", sub)
	}
	req.Header.Set("X-Roles", roles)
	req.Header.Set("X-Iat", iat)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func okHandler() (http.Handler, *int) {
	calls := 0
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, "hello")
	}), &calls
}

func TestMiddleware(t *testing.T) {
	w, path := openWriter(t)
	gw := openReader(t, path)
	mustRevoke(t, w, ScopeRole, "acme", "super_admin", 2000)
	mustRevoke(t, w, ScopeToken, "acme", "jti-x", 9999)
	next, calls := okHandler()
	h := Middleware(next, gw, claimsFromHeaders)

	// Bruce (no super_admin): served.
	rec := serve(h, "bruce", "viewer", "1500")
	if rec.Code != http.StatusOK || rec.Body.String() != "hello" || *calls != 1 {
		t.Fatalf("bruce: %d %q", rec.Code, rec.Body.String())
	}
	// John (super_admin, issued before the change): 401 naming the rule.
	rec = serve(h, "john", "viewer,super_admin", "1999")
	if rec.Code != http.StatusUnauthorized || *calls != 1 {
		t.Fatalf("john: %d", rec.Code)
	}
	want := `Bearer error="invalid_token", error_description="token revoked: role permissions changed at 2000"`
	if got := rec.Header().Get("WWW-Authenticate"); got != want {
		t.Errorf("WWW-Authenticate:\n got %s\nwant %s", got, want)
	}
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control: %q", rec.Header().Get("Cache-Control"))
	}
	// John after refreshing: served.
	if rec = serve(h, "john", "viewer,super_admin", "2000"); rec.Code != http.StatusOK {
		t.Errorf("john refreshed: %d", rec.Code)
	}
	// A revocation made now reaches the running gateway on its next request.
	mustRevoke(t, w, ScopeSubject, "acme", "bruce", 3000)
	rec = serve(h, "bruce", "viewer", "2500")
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Header().Get("WWW-Authenticate"), "subject permissions changed at 3000") {
		t.Errorf("bruce after his revocation: %d %q", rec.Code, rec.Header().Get("WWW-Authenticate"))
	}
}

func TestMiddlewareClaimsErrors(t *testing.T) {
	w, _ := openWriter(t)
	next, calls := okHandler()
	h := Middleware(next, w, claimsFromHeaders, WithRealm(`api "v2"`))

	// No token at all: passed on (authentication is another layer's job); with
	// RequireToken, a bare challenge.
	if rec := serve(h, "", "", "0"); rec.Code != http.StatusOK || *calls != 1 {
		t.Fatalf("no token: %d, next called %d times", rec.Code, *calls)
	}
	*calls = 0
	required := Middleware(next, w, claimsFromHeaders, WithRealm(`api "v2"`), RequireToken())
	rec := serve(required, "", "", "0")
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("no token, RequireToken: %d", rec.Code)
	}
	if got, want := rec.Header().Get("WWW-Authenticate"), `Bearer realm="api \"v2\""`; got != want {
		t.Errorf("no token, RequireToken: %s, want %s", got, want)
	}
	rec = serve(h, "garbage", "", "0") // claims that cannot be read
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("bad token: %d", rec.Code)
	}
	if got, want := rec.Header().Get("WWW-Authenticate"), `Bearer realm="api \"v2\"", error="invalid_token", error_description="the access token could not be read"`; got != want {
		t.Errorf("bad token: %s, want %s", got, want)
	}
	// Claims the ledger refuses as malformed: 401, not 503.
	rec = serve(h, strings.Repeat("x", MaxKeyLen+1), "", "0")
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("over-long subject: %d %q", rec.Code, rec.Header().Get("WWW-Authenticate"))
	}
	nilClaims := Middleware(next, w, func(*http.Request) (*Token, error) { return nil, nil })
	if rec = serve(nilClaims, "john", "", "0"); rec.Code != http.StatusUnauthorized {
		t.Errorf("nil token: %d", rec.Code)
	}
	if *calls != 0 {
		t.Errorf("next was called %d times", *calls)
	}
}

func TestMiddlewareFailsClosedWhenTheLedgerCannotAnswer(t *testing.T) {
	w, path := openWriter(t)
	gw := openReader(t, path)
	mustRevoke(t, w, ScopeGlobal, "", "", 10)
	gw.Close() // a check now fails with ErrClosed

	next, calls := okHandler()
	rec := serve(Middleware(next, gw, claimsFromHeaders), "bruce", "", "5")
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("WWW-Authenticate") != "" {
		t.Errorf("default: %d %q", rec.Code, rec.Header().Get("WWW-Authenticate"))
	}
	rec = serve(Middleware(next, gw, claimsFromHeaders, WithCheckErrorStatus(http.StatusInternalServerError)), "bruce", "", "5")
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("WithCheckErrorStatus: %d", rec.Code)
	}
	if *calls != 0 {
		t.Errorf("next was called %d times while failing closed", *calls)
	}

	// A gateway may choose to fail open, explicitly, and sees the error.
	var seen error
	failOpen := WithCheckErrorHandler(func(w http.ResponseWriter, r *http.Request, err error, next http.Handler) {
		seen = err
		next.ServeHTTP(w, r)
	})
	rec = serve(Middleware(next, gw, claimsFromHeaders, failOpen), "bruce", "", "5")
	if rec.Code != http.StatusOK || *calls != 1 || !errors.Is(seen, ErrClosed) {
		t.Errorf("fail open: %d, calls %d, err %v", rec.Code, *calls, seen)
	}
}

func TestQuote(t *testing.T) {
	if got := quote("a\"b\\c\x01d\u00e9e"); got != `a\"b\\cde` {
		t.Errorf("quote: %q", got)
	}
}

// untilCode serves john every 20 ms until the answer is code, with allowed the only
// other answers on the way: at most 150 requests (3 s), far fewer than the library's
// own countdown (one check in 4093).
func untilCode(t *testing.T, h http.Handler, code int, allowed ...int) {
	t.Helper()
	for i := 0; i < 150; i++ {
		rec := serve(h, "john", "", "1500")
		if rec.Code == code {
			return
		}
		if !containsCode(allowed, rec.Code) {
			t.Fatalf("request %d: %d %q, want %v until %d", i, rec.Code, rec.Body.String(), allowed, code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("150 requests over 3 s, still not %d", code)
}

func containsCode(codes []int, code int) bool {
	for _, c := range codes {
		if c == code {
			return true
		}
	}
	return false
}

func TestMiddlewareNoticesALedgerReplacedOrDeleted(t *testing.T) {
	w, path := openWriter(t)
	gw := openReader(t, path)
	next, _ := okHandler()
	h := Middleware(next, gw, claimsFromHeaders)
	if rec := serve(h, "john", "", "1500"); rec.Code != http.StatusOK {
		t.Fatalf("before: %d", rec.Code)
	}

	// Another ledger, john revoked in it, renamed over the path: read afresh.
	other, otherPath := openWriter(t)
	mustRevoke(t, other, ScopeSubject, "acme", "john", 2000)
	other.Close()
	w.Close()
	if err := os.Rename(otherPath, path); err != nil {
		t.Fatal(err)
	}
	// The old handle may learn of the replacement first (the kernel's notice): it then
	// fails closed until the middleware's next look at the path opens the new file.
	untilCode(t, h, http.StatusUnauthorized, http.StatusOK, http.StatusServiceUnavailable)

	// Deleted: checks fail (closed), 503 by default; then a ledger at the path again.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	untilCode(t, h, http.StatusServiceUnavailable, http.StatusUnauthorized)
	again, err := Open(path, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	untilCode(t, h, http.StatusOK, http.StatusServiceUnavailable)
}

// A nil argument is a mistake in the program: the constructors say so at once, instead of
// every request panicking later.
func TestMiddlewareConstructorsRefuseNilArguments(t *testing.T) {
	w, _ := openWriter(t)
	next, _ := okHandler()
	c, err := NewClaims(SpecGeneric)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := func(*http.Request) ([]byte, error) { return nil, ErrNoToken }
	for name, build := range map[string]func(){
		"nil claimsFromRequest": func() { Middleware(next, w, nil) },
		"nil next":              func() { Middleware(nil, w, claimsFromHeaders) },
		"nil ledger":            func() { Middleware(next, nil, claimsFromHeaders) },
		"nil claim mapping":     func() { ClaimsMiddleware(next, w, nil, payload) },
		"nil payloadFromRequest": func() {
			ClaimsMiddleware(next, w, c, nil)
		},
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "revledger: ") {
					t.Errorf("%s: recovered %v, want a revledger panic", name, r)
				}
			}()
			build()
		}()
	}
}
