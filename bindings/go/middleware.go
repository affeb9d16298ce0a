package revledger

import (
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// ErrNoToken may be returned (or wrapped) by a Middleware's claimsFromRequest when the
// request carries no access token at all: the request then goes on to the next handler
// (authentication is another layer's job, as for the nginx module, DESIGN.md §8), or
// gets a bare Bearer challenge (RFC 6750 §3.1) with RequireToken, instead of
// error="invalid_token".
var ErrNoToken = errors.New("revledger: no access token in the request")

// Option configures Middleware.
type Option func(*middleware)

// WithRealm adds realm="..." to the WWW-Authenticate challenges.
func WithRealm(realm string) Option {
	return func(m *middleware) { m.realm = realm }
}

// RequireToken answers a request that carries no token (ErrNoToken) with 401 and a bare
// Bearer challenge (RFC 6750 §3.1) instead of passing it on: for a middleware that is
// also the authentication layer (golangjwt.BearerClaims verifies tokens).
func RequireToken() Option {
	return func(m *middleware) { m.requireToken = true }
}

// WithCheckErrorStatus sets the status written when Check fails (the ledger is
// unreadable, closed, ...) or the ledger is stale (WithMaxStaleness): 503 Service
// Unavailable by default. The request is refused either way (fail closed).
func WithCheckErrorStatus(code int) Option {
	return func(m *middleware) {
		m.onCheckError = func(w http.ResponseWriter, r *http.Request, err error, next http.Handler) {
			text := http.StatusText(code)
			var stale *StaleError
			if errors.As(err, &stale) {
				text += ": " + stale.Error()
			}
			http.Error(w, text, code)
		}
	}
}

// WithCheckErrorHandler hands requests whose token could not be checked to h, which
// answers them itself or, to fail open, calls next.ServeHTTP(w, r). Choosing to fail
// open is the gateway's decision; the default fails closed with 503. With
// WithMaxStaleness, h also gets the requests refused for a stale ledger, with a
// *StaleError (errors.Is(err, ErrStale)).
func WithCheckErrorHandler(h func(w http.ResponseWriter, r *http.Request, err error, next http.Handler)) Option {
	return func(m *middleware) { m.onCheckError = h }
}

// WithMaxStaleness makes the middleware fail closed when the ledger is fed by
// `revledger sync` (docs/SYNC.md) and has not heard from its stream for longer than d,
// or never has, or is degraded (it may lack rules its stream carried: skipped or refused
// entries, a stream trimmed past its position; docs/SYNC.md §5): a token the ledger finds
// valid is then refused with 503 (or as
// WithCheckErrorStatus / WithCheckErrorHandler choose), the body saying how stale the
// ledger is, because a revocation published meanwhile may not have reached this host.
// A token the ledger finds revoked still gets its 401: rules only accumulate, so a
// stale ledger's "revoked" stands.
//
// The sync process records that it heard from the stream about once a second while
// Redis answers, even when nothing is published, to the whole second: choose d of a
// few seconds at least (say 10 s). Reading the time takes no lock. d must be positive
// (Middleware panics otherwise).
func WithMaxStaleness(d time.Duration) Option {
	if d <= 0 {
		panic("revledger: WithMaxStaleness needs a positive duration, got " + d.String())
	}
	return func(m *middleware) { m.maxStaleness = d }
}

// ErrStale matches (errors.Is) the *StaleError given to a check-error handler when the
// ledger is older than WithMaxStaleness allows.
var ErrStale = errors.New("revledger: the revocation ledger is stale")

// StaleError says that the ledger last heard from its stream too long ago, or never, or
// that it is degraded: it may lack rules its stream carried (docs/SYNC.md §5).
type StaleError struct {
	// Degraded is the ledger's Freshness.Degraded bits (0 when it is only old).
	Degraded uint8
	// LastHeard is when the ledger last heard from its stream; zero when it never did.
	LastHeard time.Time
	// Age is how long before the request that was (0 when it never heard).
	Age time.Duration
	// MaxStaleness is the limit given to WithMaxStaleness.
	MaxStaleness time.Duration
}

func (e *StaleError) Error() string {
	if e.Degraded != 0 {
		return "the revocation ledger is degraded (" + degradedReasons(e.Degraded) + "): it may lack revocations until an operator resyncs it"
	}
	if e.LastHeard.IsZero() {
		return "the revocation ledger has never heard from its stream (no sync process has fed it); limit " + e.MaxStaleness.String()
	}
	return "the revocation ledger last heard from its stream " + e.Age.Round(time.Millisecond).String() + " ago (limit " + e.MaxStaleness.String() + ")"
}

// Is makes errors.Is(err, ErrStale) true.
func (e *StaleError) Is(target error) bool { return target == ErrStale }

type middleware struct {
	next         http.Handler
	ledger       *Ledger
	claims       func(*http.Request) (*Token, error)
	mapping      *Claims                             // ClaimsMiddleware: payloads read through it
	payload      func(*http.Request) ([]byte, error) // ClaimsMiddleware
	realm        string
	requireToken bool // RequireToken: no token is 401, not next
	onCheckError func(w http.ResponseWriter, r *http.Request, err error, next http.Handler)
	maxStaleness time.Duration    // 0: not checked
	now          func() time.Time // the clock (tests set another)
	verified     atomic.Int64     // the second the ledger's path was last verified
}

// Middleware refuses requests whose token is revoked. For each request it takes the
// claims of the (already verified) access token from claimsFromRequest and checks them
// against l:
//
//   - valid: next serves the request;
//   - revoked: 401 with WWW-Authenticate: Bearer error="invalid_token",
//     error_description naming the rule (scope and cutoff), so the client refreshes
//     its token;
//   - no token (claimsFromRequest returns ErrNoToken): next serves the request, as
//     authentication is another layer's job; with RequireToken, 401 with a bare
//     Bearer challenge;
//   - claimsFromRequest fails otherwise: 401 error="invalid_token";
//   - Check refuses the claims as malformed (ErrInvalidArgument: over-long claims,
//     too many roles): 401 error="invalid_token";
//   - Check fails otherwise (ledger unreadable, closed): 503, or as
//     WithCheckErrorStatus / WithCheckErrorHandler choose. Never "valid" by default;
//   - with WithMaxStaleness, a valid token while the ledger is stale: the same 503,
//     saying how stale.
//
// Once a second it also makes sure that l's file is still the ledger at its path: a
// reader whose ledger was deleted fails its checks (closed) within a second, and one
// replaced by another file, or created again, is opened afresh from the path.
//
// It panics when next, l or claimsFromRequest is nil, as http.Handle does for a nil
// handler: a mistake in the program, not a request to answer.
func Middleware(next http.Handler, l *Ledger, claimsFromRequest func(*http.Request) (*Token, error), opts ...Option) http.Handler {
	if claimsFromRequest == nil {
		panic("revledger: Middleware with a nil claimsFromRequest")
	}
	m := newMiddleware("Middleware", next, l, opts)
	m.claims = claimsFromRequest
	return m
}

// ClaimsMiddleware is Middleware for JWT payloads: payloadFromRequest returns the JSON
// payload of the request's (already verified) access token, which is read through the
// claim mapping c (DESIGN.md §7) and checked with CheckClaims. The answers are
// Middleware's; a payload the mapping cannot read (no iat, a claim of the wrong type)
// is 401 error="invalid_token". The golangjwt subpackage builds payloadFromRequest from
// a token verified by github.com/golang-jwt/jwt/v5. Like Middleware, it panics when an
// argument is nil (c included: check NewClaims's error).
func ClaimsMiddleware(next http.Handler, l *Ledger, c *Claims, payloadFromRequest func(*http.Request) ([]byte, error), opts ...Option) http.Handler {
	if c == nil || payloadFromRequest == nil {
		panic("revledger: ClaimsMiddleware with a nil claim mapping or payloadFromRequest")
	}
	m := newMiddleware("ClaimsMiddleware", next, l, opts)
	m.mapping = c
	m.payload = payloadFromRequest
	return m
}

func newMiddleware(name string, next http.Handler, l *Ledger, opts []Option) *middleware {
	if next == nil || l == nil {
		panic("revledger: " + name + " with a nil next handler or ledger")
	}
	m := &middleware{
		next:   next,
		ledger: l,
		onCheckError: func(w http.ResponseWriter, r *http.Request, err error, next http.Handler) {
			text := "token revocation status unavailable"
			var stale *StaleError
			if errors.As(err, &stale) {
				text += ": " + stale.Error()
			}
			http.Error(w, text, http.StatusServiceUnavailable)
		},
		now: time.Now,
	}
	for _, o := range opts {
		o(m)
	}
	return m
}

// check reads the request's token and checks it; read is false when there was no
// token to read (the request was then passed on, or refused with a challenge).
func (m *middleware) check(w http.ResponseWriter, r *http.Request) (v Verdict, read bool, err error) {
	var readErr error
	if m.mapping != nil {
		var payload []byte
		if payload, readErr = m.payload(r); readErr == nil {
			v, err = m.ledger.CheckClaims(m.mapping, payload)
			return v, true, err
		}
	} else {
		var tok *Token
		if tok, readErr = m.claims(r); readErr == nil && tok != nil {
			v, err = m.ledger.Check(tok)
			return v, true, err
		}
	}
	switch {
	case errors.Is(readErr, ErrNoToken) && !m.requireToken:
		m.next.ServeHTTP(w, r)
	case errors.Is(readErr, ErrNoToken):
		m.challenge(w, "", "")
	default:
		m.challenge(w, "invalid_token", "the access token could not be read")
	}
	return Verdict{}, false, nil
}

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.verify()
	v, read, err := m.check(w, r)
	if !read {
		return
	}
	switch {
	case err == nil && v.Revoked:
		m.challenge(w, "invalid_token", v.Description())
	case err == nil:
		if m.maxStaleness > 0 {
			if err := m.fresh(); err != nil {
				m.onCheckError(w, r, err, m.next)
				return
			}
		}
		m.next.ServeHTTP(w, r)
	case errors.Is(err, ErrInvalidArgument) && m.mapping != nil:
		m.challenge(w, "invalid_token", "the access token's claims could not be read")
	case errors.Is(err, ErrInvalidArgument):
		m.challenge(w, "invalid_token", "the token's claims exceed the revocation ledger's limits")
	default:
		m.onCheckError(w, r, err, m.next)
	}
}

// verify makes sure, once a second, that the ledger's file is still the ledger at its
// path (the library looks when the kernel notices a change there, and on one check in
// thousands, where no notice comes). A reader whose file was deleted or replaced is
// opened afresh from the path; while that fails, its checks fail (closed) and the next
// second tries again.
func (m *middleware) verify() {
	sec := m.now().Unix()
	if m.verified.Load() == sec || m.verified.Swap(sec) == sec {
		return
	}
	if m.ledger.Refresh() != nil {
		_ = m.ledger.reopen()
	}
}

// fresh returns nil when the ledger heard from its stream within maxStaleness, else a
// *StaleError (or the error of reading the time).
func (m *middleware) fresh() error {
	heard, degraded, err := m.ledger.lastHeard()
	if err != nil {
		return err
	}
	if degraded != 0 {
		return &StaleError{Degraded: degraded, LastHeard: time.Unix(heard, 0), MaxStaleness: m.maxStaleness}
	}
	if heard == 0 {
		return &StaleError{MaxStaleness: m.maxStaleness}
	}
	at := time.Unix(heard, 0)
	age := m.now().Sub(at)
	if age <= m.maxStaleness {
		return nil
	}
	return &StaleError{LastHeard: at, Age: age, MaxStaleness: m.maxStaleness}
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
