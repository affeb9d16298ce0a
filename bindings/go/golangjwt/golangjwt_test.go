package golangjwt

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	revledger "github.com/revledger/revledger/bindings/go"
)

// The provider-shaped tokens of tests/claims/providers.json, signed here by golang-jwt.
type rule struct {
	Scope  string `json:"scope"`
	Tenant string `json:"tenant"`
	Key    string `json:"key"`
}

type providerCase struct {
	Name         string         `json:"name"`
	Spec         string         `json:"spec"`
	Claims       map[string]any `json:"claims"`
	RevokedBy    []rule         `json:"revoked_by"`
	NotRevokedBy []rule         `json:"not_revoked_by"`
}

func providerCases(t *testing.T) []providerCase {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "tests", "claims", "providers.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Tokens []providerCase `json:"tokens"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Tokens) < 5 {
		t.Fatalf("%d provider tokens", len(f.Tokens))
	}
	return f.Tokens
}

var signingKey = func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}()

func keyFunc(*jwt.Token) (any, error) { return &signingKey.PublicKey, nil }

func sign(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(signingKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ledgerPair(t *testing.T) (*revledger.Ledger, *revledger.Ledger) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "l")
	w, err := revledger.Open(path, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r, err := revledger.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return w, r
}

func serve(h http.Handler, authorization string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", "/orders", nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

var ok = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })

func revoke(t *testing.T, w *revledger.Ledger, r rule, iat, exp int64) {
	t.Helper()
	scope, err := revledger.ParseScope(r.Scope)
	if err != nil {
		t.Fatal(err)
	}
	at := iat + 1
	if scope == revledger.ScopeToken {
		at = exp
	}
	if err := w.Revoke(scope, []byte(r.Tenant), []byte(r.Key), at); err != nil {
		t.Fatalf("revoke %+v: %v", r, err)
	}
}

// Every provider token, signed and verified by golang-jwt, goes through the middleware:
// valid until one of its rules is revoked, then 401 naming the rule's scope; its near
// misses all at once leave it valid.
func TestProviderTokensSignedByGolangJWT(t *testing.T) {
	for _, c := range providerCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			mapping, err := revledger.NewClaims(c.Spec)
			if err != nil {
				t.Fatal(err)
			}
			defer mapping.Close()
			iat := time.Now().Unix() - 10
			exp := iat + 3610
			claims := jwt.MapClaims{}
			for k, v := range c.Claims {
				claims[k] = v
			}
			claims["iat"] = iat
			claims["exp"] = exp
			bearer := "Bearer " + sign(t, claims)
			for i, rl := range c.RevokedBy {
				w, r := ledgerPair(t)
				h := Middleware(ok, r, mapping, BearerClaims(keyFunc, jwt.WithValidMethods([]string{"RS256"})))
				if rec := serve(h, bearer); rec.Code != 200 {
					t.Fatalf("rule %d: before revoking: %d %s", i, rec.Code, rec.Header().Get("WWW-Authenticate"))
				}
				revoke(t, w, rl, iat, exp)
				rec := serve(h, bearer)
				challenge := rec.Header().Get("WWW-Authenticate")
				if rec.Code != 401 || !strings.HasPrefix(challenge, `Bearer error="invalid_token", error_description="token revoked`) {
					t.Fatalf("rule %+v: %d %q", rl, rec.Code, challenge)
				}
				if rl.Scope != "token" && !strings.Contains(challenge, rl.Scope+" permissions changed") {
					t.Fatalf("rule %+v: the challenge names another scope: %q", rl, challenge)
				}
			}
			w, r := ledgerPair(t)
			for _, rl := range c.NotRevokedBy {
				revoke(t, w, rl, iat, exp)
			}
			h := Middleware(ok, r, mapping, BearerClaims(keyFunc))
			if rec := serve(h, bearer); rec.Code != 200 {
				t.Fatalf("near misses revoked the token: %d %s", rec.Code, rec.Header().Get("WWW-Authenticate"))
			}
			// Check, for callers that are not handlers, agrees.
			parsed := jwt.MapClaims{}
			if _, err := jwt.ParseWithClaims(strings.TrimPrefix(bearer, "Bearer "), parsed, keyFunc); err != nil {
				t.Fatal(err)
			}
			revoke(t, w, c.RevokedBy[0], iat, exp)
			if v, err := Check(r, mapping, parsed); err != nil || !v.Revoked {
				t.Fatalf("Check: %v, %v", v, err)
			}
		})
	}
}

func TestMiddlewareRefusesWhatGolangJWTDoesNotVerify(t *testing.T) {
	_, r := ledgerPair(t)
	mapping, _ := revledger.NewClaims(revledger.SpecGeneric)
	defer mapping.Close()
	h := Middleware(ok, r, mapping, BearerClaims(keyFunc, jwt.WithValidMethods([]string{"RS256"})))
	now := time.Now().Unix()
	good := sign(t, jwt.MapClaims{"sub": "john", "iat": now - 10, "exp": now + 60})
	if rec := serve(h, "Bearer "+good); rec.Code != 200 {
		t.Fatalf("good token: %d", rec.Code)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	forged, _ := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"sub": "john", "iat": now}).SignedString(other)
	expired := sign(t, jwt.MapClaims{"sub": "john", "iat": now - 100, "exp": now - 50})
	noIat := sign(t, jwt.MapClaims{"sub": "john", "exp": now + 60})
	wrongType := sign(t, jwt.MapClaims{"sub": 42, "iat": now, "exp": now + 60})
	for name, auth := range map[string]string{
		"forged signature": "Bearer " + forged,
		"expired":          "Bearer " + expired,
		"not a JWT":        "Bearer abc",
		"no iat":           "Bearer " + noIat,
		"sub not a string": "Bearer " + wrongType,
	} {
		rec := serve(h, auth)
		if rec.Code != 401 || !strings.Contains(rec.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%s: %d %q", name, rec.Code, rec.Header().Get("WWW-Authenticate"))
		}
	}
	// No bearer token: passed on (authentication is another layer's job), or a bare
	// challenge with RequireToken.
	required := Middleware(ok, r, mapping, BearerClaims(keyFunc), revledger.RequireToken())
	for _, auth := range []string{"", "Basic am9objpwdw=="} {
		if rec := serve(h, auth); rec.Code != 200 {
			t.Errorf("no bearer token (%q): %d", auth, rec.Code)
		}
		if rec := serve(required, auth); rec.Code != 401 || rec.Header().Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("no bearer token (%q), RequireToken: %d %q", auth, rec.Code, rec.Header().Get("WWW-Authenticate"))
		}
	}
	r.Close()
	if rec := serve(h, "Bearer "+good); rec.Code != 503 {
		t.Errorf("closed ledger: %d", rec.Code)
	}
}

func TestBearerClaimsReportsNoToken(t *testing.T) {
	req := httptest.NewRequest("GET", "/", nil)
	if _, err := BearerClaims(keyFunc)(req); !errors.Is(err, revledger.ErrNoToken) {
		t.Fatalf("no header: %v", err)
	}
	req.Header.Set("Authorization", "Basic am9objpwdw==")
	if _, err := BearerClaims(keyFunc)(req); !errors.Is(err, revledger.ErrNoToken) {
		t.Fatalf("Basic: %v", err)
	}
	if _, err := Payload(jwt.MapClaims{"bad": func() {}}); err == nil {
		t.Fatal("a claim JSON cannot encode")
	}
}
