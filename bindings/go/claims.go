package revledger

/*
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "revledger.h"

// As in revledger.go: each helper makes one call and copies revledger_last_error()
// into C memory on failure, on the thread that made the call.

static char *rlc_error(revledger_status status) {
	if (status == REVLEDGER_OK) {
		return NULL;
	}
	const char *m = revledger_last_error();
	if (m == NULL) {
		m = "";
	}
	size_t n = strlen(m) + 1;
	char *c = malloc(n);
	if (c != NULL) {
		memcpy(c, m, n);
	}
	return c;
}

typedef struct {
	revledger_status status;
	char *err;
	revledger_claims *claims;
} rlc_new_result;

static rlc_new_result rlc_claims_new(const char *spec) {
	rlc_new_result r;
	r.claims = NULL;
	r.status = revledger_claims_new(spec, &r.claims);
	r.err = rlc_error(r.status);
	return r;
}

typedef struct {
	revledger_status status;
	char *err;
	revledger_verdict verdict;
} rlc_check_result;

// jwt != 0: a compact JWS (revledger_check_jwt); else a JSON payload.
static rlc_check_result rlc_check(const revledger *l, const revledger_claims *c,
                                  const uint8_t *ptr, size_t len, int jwt) {
	rlc_check_result r;
	revledger_bytes b;
	b.ptr = ptr;
	b.len = len;
	memset(&r.verdict, 0, sizeof r.verdict);
	r.status = jwt ? revledger_check_jwt(l, c, b, &r.verdict)
	               : revledger_check_claims(l, c, b, &r.verdict);
	r.err = rlc_error(r.status);
	return r;
}
*/
import "C"

import (
	"runtime"
	"sync"
	"unsafe"
)

// Claims is a compiled claim mapping (DESIGN.md §7): where the tenant, subject, roles,
// client, session, token id and iat of the token to check are found in a JWT's payload.
// Build one with NewClaims, share it between goroutines and ledgers, Close it when done
// (a finalizer closes a forgotten one).
type Claims struct {
	// mu guards c as Ledger.mu guards its handle: checks hold it shared, Close
	// exclusively, so Close waits for checks in flight.
	mu   sync.RWMutex
	c    *C.revledger_claims
	spec string
}

// The built-in claim mappings (DESIGN.md §7 gives their sources).
const (
	// SpecGeneric: tenant|tid|org_id, sub, roles+groups+permissions+scope+scp,
	// azp|client_id|appid, sid, jti|uti.
	SpecGeneric = "generic"
	// SpecAuth0: org_id, sub, permissions + every claim ending in /roles + scope, azp,
	// sid, jti.
	SpecAuth0 = "auth0"
	// SpecKeycloak: iss, sub, realm_access.roles + resource_access.<client>.roles (keyed
	// "client:role") + groups + scope, azp, sid, jti; entitlements escaped ('%' → "%25",
	// ':' → "%3A").
	SpecKeycloak = "keycloak"
	// SpecEntra: tid, oid, roles+groups+wids+scp, azp|appid, sid, uti.
	SpecEntra = "entra"
)

// NewClaims compiles a claim mapping: a built-in name (SpecGeneric, SpecAuth0,
// SpecKeycloak, SpecEntra) or the JSON text of a pointer spec, e.g.
// `{"tenant":["/tid"],"subject":["/sub"],"roles":["/realm_access/roles","/resource_access/*/roles"]}`.
// An unknown name or a misshapen spec is ErrInvalidArgument saying what is wrong.
func NewClaims(spec string) (*Claims, error) {
	p, err := cPath(spec)
	if err != nil {
		return nil, &Error{Status: StatusInvalidArgument, Message: "invalid argument: the claim mapping spec contains a NUL byte"}
	}
	defer C.free(unsafe.Pointer(p))
	r := C.rlc_claims_new(p)
	if r.status != C.REVLEDGER_OK {
		return nil, takeError(r.status, r.err)
	}
	c := &Claims{c: r.claims, spec: spec}
	runtime.SetFinalizer(c, (*Claims).Close)
	return c, nil
}

// Spec is the spec the mapping was compiled from.
func (c *Claims) Spec() string { return c.spec }

// Close frees the mapping. It waits for checks in flight; checks after Close return
// ErrClosed. Closing twice is a no-op.
func (c *Claims) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return nil
	}
	C.revledger_claims_free(c.c)
	c.c = nil
	runtime.SetFinalizer(c, nil)
	return nil
}

// CheckClaims reports whether the token whose JWT payload (a JSON object) is payload is
// revoked, reading it through the mapping c. A payload the mapping cannot read (not a
// JSON object, no iat, a claim of the wrong type, over a limit) is ErrInvalidArgument,
// the message naming the claim: refuse the request (401). Safe for concurrent use.
func (l *Ledger) CheckClaims(c *Claims, payload []byte) (Verdict, error) {
	if len(payload) == 0 {
		return l.checkMapped(c, nil, 0, false)
	}
	v, err := l.checkMapped(c, unsafe.Pointer(&payload[0]), len(payload), false)
	runtime.KeepAlive(payload)
	return v, err
}

// CheckJWT reports whether the token jwt, a compact JWS "header.payload.signature", is
// revoked: its payload is base64url-decoded and read through the mapping c.
//
// The signature is NOT verified (nor exp, aud or the header): CheckJWT is a deny layer
// after authentication, never instead of it. Call it on a token your JWT library has
// verified. A token that is not three base64url parts, or whose payload the mapping
// cannot read, is ErrInvalidArgument. Safe for concurrent use; no allocation.
func (l *Ledger) CheckJWT(c *Claims, jwt string) (Verdict, error) {
	if len(jwt) == 0 {
		return l.checkMapped(c, nil, 0, true)
	}
	// The string's bytes go to C for the duration of the call: Go memory holding no
	// pointers, which cgo allows, and C only reads it.
	data := *(*unsafe.Pointer)(unsafe.Pointer(&jwt))
	v, err := l.checkMapped(c, data, len(jwt), true)
	runtime.KeepAlive(jwt)
	return v, err
}

func (l *Ledger) checkMapped(c *Claims, data unsafe.Pointer, n int, jwt bool) (Verdict, error) {
	if c == nil {
		return Verdict{}, &Error{Status: StatusInvalidArgument, Message: "invalid argument: claim mapping is nil"}
	}
	h, err := l.acquire()
	if err != nil {
		return Verdict{}, err
	}
	c.mu.RLock()
	if c.c == nil {
		c.mu.RUnlock()
		l.mu.RUnlock()
		return Verdict{}, &Error{Status: StatusClosed, Message: "claim mapping is closed"}
	}
	isJWT := C.int(0)
	if jwt {
		isJWT = 1
	}
	r := C.rlc_check(h, c.c, (*C.uint8_t)(data), C.size_t(n), isJWT)
	runtime.KeepAlive(c)
	runtime.KeepAlive(l)
	c.mu.RUnlock()
	l.mu.RUnlock()
	if r.status != C.REVLEDGER_OK {
		return Verdict{}, takeError(r.status, r.err)
	}
	return Verdict{
		Revoked: bool(r.verdict.revoked),
		Scope:   Scope(r.verdict.scope),
		Cutoff:  int64(r.verdict.cutoff),
	}, nil
}
