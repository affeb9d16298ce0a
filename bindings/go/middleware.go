package revledger

import (
	"errors"
	"net/http"
	"strings"
)

// ErrNoToken may be returned (or wrapped) by a Middleware's claimsFromRequest when the
// request carries no access token at all: the answer is then a bare Bearer challenge
// (RFC 6750 §3.1) instead of error="invalid_token".
var ErrNoToken = errors.New("revledger: no access token in the request")

// Option configures Middleware.
type Option func(*middleware)

// WithRealm adds realm="..." to the WWW-Authenticate challenges.
func WithRealm(realm string) Option {
	return func(m *middleware) { m.realm = realm }
}

// WithCheckErrorStatus sets the status written when Check fails (the ledger is
// unreadable, closed, ...): 503 Service Unavailable by default. The request is refused
// either way (fail closed).
func WithCheckErrorStatus(code int) Option {
	return func(m *middleware) {
		m.onCheckError = func(w http.ResponseWriter, r *http.Request, err error, next http.Handler) {
			http.Error(w, http.StatusText(code), code)
		}
	}
}

// WithCheckErrorHandler hands requests whose token could not be checked to h, which
// answers them itself or, to fail open, calls next.ServeHTTP(w, r). Choosing to fail
// open is the gateway's decision; the default fails closed with 503.
func WithCheckErrorHandler(h func(w http.ResponseWriter, r *http.Request, err error, next http.Handler)) Option {
	return func(m *middleware) { m.onCheckError = h }
}

type middleware struct {
	next         http.Handler
	ledger       *Ledger
	claims       func(*http.Request) (*Token, error)
	realm        string
	onCheckError func(w http.ResponseWriter, r *http.Request, err error, next http.Handler)
}

// Middleware refuses requests whose token is revoked. For each request it takes the
// claims of the (already verified) access token from claimsFromRequest and checks them
// against l:
//
//   - valid: next serves the request;
//   - revoked: 401 with WWW-Authenticate: Bearer error="invalid_token",
//     error_description naming the rule (scope and cutoff), so the client refreshes
//     its token;
//   - claimsFromRequest fails: 401 (a bare Bearer challenge when the error is
//     ErrNoToken, error="invalid_token" otherwise);
//   - Check refuses the claims as malformed (ErrInvalidArgument: over-long claims,
//     too many roles): 401 error="invalid_token";
//   - Check fails otherwise (ledger unreadable, closed): 503, or as
//     WithCheckErrorStatus / WithCheckErrorHandler choose. Never "valid" by default.
func Middleware(next http.Handler, l *Ledger, claimsFromRequest func(*http.Request) (*Token, error), opts ...Option) http.Handler {
	m := &middleware{
		next:   next,
		ledger: l,
		claims: claimsFromRequest,
		onCheckError: func(w http.ResponseWriter, r *http.Request, err error, next http.Handler) {
			http.Error(w, "token revocation status unavailable", http.StatusServiceUnavailable)
		},
	}
	for _, o := range opts {
		o(m)
	}
	return m
}

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok, err := m.claims(r)
	if err != nil || tok == nil {
		if errors.Is(err, ErrNoToken) {
			m.challenge(w, "", "")
		} else {
			m.challenge(w, "invalid_token", "the access token could not be read")
		}
		return
	}
	v, err := m.ledger.Check(tok)
	switch {
	case err == nil && v.Revoked:
		m.challenge(w, "invalid_token", v.Description())
	case err == nil:
		m.next.ServeHTTP(w, r)
	case errors.Is(err, ErrInvalidArgument):
		m.challenge(w, "invalid_token", "the token's claims exceed the revocation ledger's limits")
	default:
		m.onCheckError(w, r, err, m.next)
	}
}

// challenge writes 401 with a Bearer challenge (RFC 6750 §3).
func (m *middleware) challenge(w http.ResponseWriter, code, description string) {
	var params []string
	if m.realm != "" {
		params = append(params, `realm="`+quote(m.realm)+`"`)
	}
	if code != "" {
		params = append(params, `error="`+quote(code)+`"`)
	}
	if description != "" {
		params = append(params, `error_description="`+quote(description)+`"`)
	}
	value := "Bearer"
	if len(params) > 0 {
		value += " " + strings.Join(params, ", ")
	}
	w.Header().Set("WWW-Authenticate", value)
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, http.StatusText(http.StatusUnauthorized), http.StatusUnauthorized)
}

// quote makes s safe inside a quoted-string: backslash before '"' and '\', control
// characters and non-ASCII dropped (RFC 6750 allows only printable ASCII there).
func quote(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c >= 0x20 && c < 0x7f:
			b.WriteByte(c)
		}
	}
	return b.String()
}
