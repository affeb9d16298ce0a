// Package golangjwt connects revledger to github.com/golang-jwt/jwt/v5: a net/http
// middleware that refuses requests whose token, verified by golang-jwt, was revoked.
//
// golang-jwt verifies the token (signature, exp, nbf, and whatever jwt.ParserOption
// asks: audience, issuer, ...); its jwt.MapClaims are then read through a revledger
// claim mapping (DESIGN.md §7: generic, auth0, keycloak, entra or a JSON-Pointer spec)
// and checked against the ledger:
//
//	keys := func(t *jwt.Token) (any, error) { return publicKey, nil }
//	mapping, err := revledger.NewClaims(revledger.SpecKeycloak)
//	if err != nil {
//		log.Fatal(err)
//	}
//	h := golangjwt.Middleware(api, gateway, mapping,
//		golangjwt.BearerClaims(keys, jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience("orders")),
//		revledger.RequireToken()) // this layer authenticates: no token is 401
//
// It lives apart from package revledger so that the core binding imports no
// third-party module.
package golangjwt

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/golang-jwt/jwt/v5"
	revledger "github.com/revledger/revledger/bindings/go"
)

// Middleware refuses requests whose token is revoked. claimsFromRequest returns the
// jwt.MapClaims of the request's token as golang-jwt verified them (BearerClaims does
// the verification itself; an authentication middleware upstream may instead hand them
// over, e.g. in the request's context), or an error wrapping revledger.ErrNoToken when
// the request carries no token. The claims are read through mapping and checked with
// Ledger.CheckClaims; the answers are revledger.Middleware's:
//
//   - valid: next serves the request;
//   - revoked: 401 with WWW-Authenticate: Bearer error="invalid_token",
//     error_description naming the rule;
//   - no token: next serves the request (authentication is another layer's job), or,
//     with revledger.RequireToken, 401 with a bare Bearer challenge;
//   - a token that does not verify, or whose
//     claims the mapping cannot read (no iat, a claim of the wrong type): 401
//     error="invalid_token";
//   - the ledger cannot answer: 503, or as revledger.WithCheckErrorStatus /
//     WithCheckErrorHandler choose.
func Middleware(next http.Handler, l *revledger.Ledger, mapping *revledger.Claims,
	claimsFromRequest func(*http.Request) (jwt.MapClaims, error), opts ...revledger.Option) http.Handler {
	payload := func(r *http.Request) ([]byte, error) {
		claims, err := claimsFromRequest(r)
		if err != nil {
			return nil, err
		}
		if claims == nil {
			return nil, errors.New("golangjwt: no claims")
		}
		return Payload(claims)
	}
	return revledger.ClaimsMiddleware(next, l, mapping, payload, opts...)
}

// Payload is the JSON form of verified claims, as Ledger.CheckClaims takes it. golang-jwt
// decodes numbers as float64 (or json.Number with jwt.WithJSONNumber); both encode back
// to the same JSON number (an iat stays exact below 2^53).
func Payload(claims jwt.MapClaims) ([]byte, error) {
	b, err := json.Marshal(claims)
	if err != nil {
		return nil, fmt.Errorf("golangjwt: encoding the claims: %w", err)
	}
	return b, nil
}

// Check reads verified claims through mapping and checks them against l: what
// Middleware does for a request, for callers that are not net/http handlers.
func Check(l *revledger.Ledger, mapping *revledger.Claims, claims jwt.MapClaims) (revledger.Verdict, error) {
	b, err := Payload(claims)
	if err != nil {
		return revledger.Verdict{}, err
	}
	return l.CheckClaims(mapping, b)
}

// BearerClaims returns a claimsFromRequest for Middleware that takes the bearer token
// of the Authorization header (RFC 6750 §2.1) and verifies it with golang-jwt:
// jwt.Parse with keyFunc and options (signature; exp and nbf when present; add
// jwt.WithValidMethods, jwt.WithAudience, jwt.WithIssuer, jwt.WithExpirationRequired
// as your tokens need). No Authorization header, or one of another scheme (Basic): an
// error wrapping revledger.ErrNoToken. A token that does not verify: the golang-jwt
// error (Middleware answers 401 invalid_token).
func BearerClaims(keyFunc jwt.Keyfunc, options ...jwt.ParserOption) func(*http.Request) (jwt.MapClaims, error) {
	parser := jwt.NewParser(options...)
	return func(r *http.Request) (jwt.MapClaims, error) {
		h := r.Header.Get("Authorization")
		if h == "" {
			return nil, revledger.ErrNoToken
		}
		scheme, token, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			return nil, fmt.Errorf("golangjwt: the Authorization header holds no Bearer token: %w", revledger.ErrNoToken)
		}
		claims := jwt.MapClaims{}
		if _, err := parser.ParseWithClaims(strings.TrimSpace(token), claims, keyFunc); err != nil {
			return nil, fmt.Errorf("golangjwt: %w", err)
		}
		return claims, nil
	}
}
