package revledger

/*
// Where the library comes from: link_repo.go (default) or link_pkgconfig.go (build tag
// revledger_pkgconfig).

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "revledger.h"

// The helpers below call one revledger function and, when it fails, copy
// revledger_last_error() into C memory before returning to Go. The message is
// thread-local in the library: reading it inside the same C call guarantees the same
// OS thread without runtime.LockOSThread on every call, and the copy cannot be
// overwritten by another goroutine's call on that thread before Go reads it.
// Results come back by value, so no Go memory is written by C.

typedef struct {
	revledger_status status;
	char *err; // malloc'd copy of the message on failure, else NULL; Go frees it
} rl_result;

static char *rl_error(revledger_status status) {
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

static revledger_bytes rl_bytes(const uint8_t *ptr, size_t len) {
	revledger_bytes b;
	b.ptr = ptr;
	b.len = len;
	return b;
}

typedef struct {
	revledger_status status;
	char *err;
	revledger *handle;
} rl_open_result;

static rl_open_result rl_open_writer(const char *path, int64_t lifetime) {
	rl_open_result r;
	r.handle = NULL;
	r.status = revledger_open_writer(path, lifetime, &r.handle);
	r.err = rl_error(r.status);
	return r;
}

static rl_open_result rl_open_reader(const char *path) {
	rl_open_result r;
	r.handle = NULL;
	r.status = revledger_open_reader(path, &r.handle);
	r.err = rl_error(r.status);
	return r;
}

static rl_result rl_revoke(revledger *l, uint32_t scope, const uint8_t *tenant,
                           size_t tenant_len, const uint8_t *key, size_t key_len, int64_t at) {
	rl_result r;
	r.status = revledger_revoke(l, (revledger_scope)scope, rl_bytes(tenant, tenant_len),
	                            rl_bytes(key, key_len), at);
	r.err = rl_error(r.status);
	return r;
}

typedef struct {
	revledger_status status;
	char *err;
	int64_t cutoff;
} rl_revoke_now_result;

static rl_revoke_now_result rl_revoke_now(revledger *l, uint32_t scope, const uint8_t *tenant,
                                          size_t tenant_len, const uint8_t *key,
                                          size_t key_len) {
	rl_revoke_now_result r;
	r.cutoff = 0;
	r.status = revledger_revoke_now(l, (revledger_scope)scope, rl_bytes(tenant, tenant_len),
	                                rl_bytes(key, key_len), &r.cutoff);
	r.err = rl_error(r.status);
	return r;
}

// rules points to C memory (Go fills it), so it holds no Go pointers.
static rl_result rl_revoke_batch(revledger *l, const revledger_rule *rules, size_t n) {
	rl_result r;
	r.status = revledger_revoke_batch(l, rules, n);
	r.err = rl_error(r.status);
	return r;
}

static rl_result rl_sync(revledger *l) {
	rl_result r;
	r.status = revledger_sync(l);
	r.err = rl_error(r.status);
	return r;
}

static rl_result rl_refresh(const revledger *l) {
	rl_result r;
	r.status = revledger_refresh(l);
	r.err = rl_error(r.status);
	return r;
}

static rl_result rl_compact(revledger *l, int64_t now) {
	rl_result r;
	r.status = revledger_compact(l, now);
	r.err = rl_error(r.status);
	return r;
}

typedef struct {
	revledger_status status;
	char *err;
	revledger_statistics stats;
} rl_stats_result;

static rl_stats_result rl_stats(const revledger *l, int64_t now) {
	rl_stats_result r;
	memset(&r.stats, 0, sizeof r.stats);
	r.status = revledger_stats(l, now, &r.stats);
	r.err = rl_error(r.status);
	return r;
}

typedef struct {
	revledger_status status;
	char *err;
	int64_t last_heard;
	uint64_t id_ms;
	uint64_t id_seq;
	uint32_t degraded;
} rl_freshness_result;

// with_id: also read the id of the last entry applied (takes the position's lock);
// without, the call is lock-free (the middleware's path).
static rl_freshness_result rl_freshness(const revledger *l, int with_id) {
	rl_freshness_result r;
	r.last_heard = 0;
	r.id_ms = 0;
	r.id_seq = 0;
	r.degraded = 0;
	r.status = REVLEDGER_OK;
	if (with_id) {
		r.status = revledger_freshness(l, &r.last_heard, &r.id_ms, &r.id_seq);
	}
	if (r.status == REVLEDGER_OK) {
		r.status = revledger_freshness_state(l, &r.last_heard, &r.degraded);
	}
	r.err = rl_error(r.status);
	return r;
}

typedef struct {
	revledger_status status;
	char *err;
	revledger_verdict verdict;
} rl_check_result;

#define RL_DIRECT_ROLES 4
#define RL_STACK_ROLES 32

// Checks one token. Every pointer may point to Go memory free of Go pointers (cgo rules
// allow that for the duration of the call); the revledger_token and its roles array,
// which hold those pointers, are built here on the C stack (or the C heap for many
// roles), never in Go memory. Up to RL_DIRECT_ROLES roles come as separate arguments,
// so the common token needs no copy; more roles come concatenated in roles_buf with
// their lengths in role_lens.
static rl_check_result rl_check(const revledger *l,
                                const uint8_t *tenant, size_t tenant_len,
                                const uint8_t *subject, size_t subject_len,
                                const uint8_t *client, size_t client_len,
                                const uint8_t *session, size_t session_len,
                                const uint8_t *jti, size_t jti_len,
                                const uint8_t *r0, size_t r0_len,
                                const uint8_t *r1, size_t r1_len,
                                const uint8_t *r2, size_t r2_len,
                                const uint8_t *r3, size_t r3_len,
                                const uint8_t *roles_buf, const size_t *role_lens,
                                size_t roles_len, int64_t issued_at) {
	rl_check_result r;
	revledger_bytes stack[RL_STACK_ROLES];
	revledger_bytes *roles = stack;
	memset(&r.verdict, 0, sizeof r.verdict);
	if (roles_len <= RL_DIRECT_ROLES) {
		stack[0] = rl_bytes(r0, r0_len);
		stack[1] = rl_bytes(r1, r1_len);
		stack[2] = rl_bytes(r2, r2_len);
		stack[3] = rl_bytes(r3, r3_len);
	} else {
		if (roles_len > RL_STACK_ROLES) {
			if (roles_len > SIZE_MAX / sizeof *roles) {
				roles = NULL;
			} else {
				roles = malloc(roles_len * sizeof *roles);
			}
			if (roles == NULL) {
				r.status = REVLEDGER_INTERNAL;
				r.err = NULL;
				return r;
			}
		}
		size_t off = 0;
		for (size_t i = 0; i < roles_len; i++) {
			roles[i] = rl_bytes(role_lens[i] ? roles_buf + off : NULL, role_lens[i]);
			off += role_lens[i];
		}
	}
	revledger_token t;
	t.tenant = rl_bytes(tenant, tenant_len);
	t.subject = rl_bytes(subject, subject_len);
	t.client = rl_bytes(client, client_len);
	t.session = rl_bytes(session, session_len);
	t.token_id = rl_bytes(jti, jti_len);
	t.roles = roles_len ? roles : NULL;
	t.roles_len = roles_len;
	t.issued_at = issued_at;
	r.status = revledger_check(l, &t, &r.verdict);
	r.err = rl_error(r.status);
	if (roles != stack) {
		free(roles);
	}
	return r;
}

// rl_check_repeat runs rl_check n times inside one C call: the benchmarks' measure of
// a check without the cgo transition. Returns the last result.
static rl_check_result rl_check_repeat(size_t n, const revledger *l,
                                       const uint8_t *tenant, size_t tenant_len,
                                       const uint8_t *subject, size_t subject_len,
                                       const uint8_t *client, size_t client_len,
                                       const uint8_t *session, size_t session_len,
                                       const uint8_t *jti, size_t jti_len,
                                       const uint8_t *r0, size_t r0_len,
                                       const uint8_t *r1, size_t r1_len,
                                       const uint8_t *r2, size_t r2_len, int64_t issued_at) {
	rl_check_result r;
	memset(&r, 0, sizeof r);
	for (size_t i = 0; i < n; i++) {
		free(r.err);
		r = rl_check(l, tenant, tenant_len, subject, subject_len, client, client_len, session,
		             session_len, jti, jti_len,
		             r0, r0_len, r1, r1_len, r2, r2_len, NULL, 0, NULL, NULL, 3, issued_at);
	}
	return r;
}
*/
import "C"

import (
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// MaxKeyLen is the longest tenant, subject, role, client, session or token id the
// library accepts, in bytes (longer ones are ErrInvalidArgument).
const MaxKeyLen = 4096

// MaxRoles is the most roles a token given to Check may carry.
const MaxRoles = 4096

// Scope is the part of the token space a rule covers. The values are those of the C
// enum revledger_scope; any other value given to the library is ErrInvalidArgument.
type Scope uint32

// The scopes of DESIGN.md §2.
const (
	// ScopeGlobal: every token (tenant and key empty).
	ScopeGlobal Scope = C.REVLEDGER_SCOPE_GLOBAL
	// ScopeTenant: every token of a tenant (key empty).
	ScopeTenant Scope = C.REVLEDGER_SCOPE_TENANT
	// ScopeSubject: a user's tokens; key = sub.
	ScopeSubject Scope = C.REVLEDGER_SCOPE_SUBJECT
	// ScopeRole: tokens carrying a role, group, permission or scope string.
	ScopeRole Scope = C.REVLEDGER_SCOPE_ROLE
	// ScopeClient: tokens issued to a client app; key = azp / client_id.
	ScopeClient Scope = C.REVLEDGER_SCOPE_CLIENT
	// ScopeSession: tokens of a login session; key = sid.
	ScopeSession Scope = C.REVLEDGER_SCOPE_SESSION
	// ScopeToken: exactly one token; key = jti, and the rule's time is the token's exp.
	ScopeToken Scope = C.REVLEDGER_SCOPE_TOKEN
)

var scopeNames = [...]string{"global", "tenant", "subject", "role", "client", "session", "token"}

// String is the lower-case name ("role"), or "Scope(N)" for a value outside the enum.
func (s Scope) String() string {
	if int(s) < len(scopeNames) {
		return scopeNames[s]
	}
	return "Scope(" + strconv.FormatUint(uint64(s), 10) + ")"
}

// ParseScope parses a name as Scope.String spells it.
func ParseScope(name string) (Scope, error) {
	for i, n := range scopeNames {
		if n == name {
			return Scope(i), nil
		}
	}
	return 0, &Error{Status: StatusInvalidArgument, Message: "invalid argument: unknown scope " + strconv.Quote(name)}
}

// Token holds the claims of an access token that Check looks at. Empty fields mean
// "absent" (an empty Tenant is the single-tenant case).
type Token struct {
	Tenant  []byte
	Subject []byte   // sub
	Roles   [][]byte // every entitlement string: roles, groups, permissions, scopes
	Client  []byte   // azp / client_id
	Session []byte   // sid
	TokenID []byte   // jti
	// IssuedAt is iat, Unix seconds.
	IssuedAt int64
}

// Verdict is the answer of Check. When Revoked is false, Scope is ScopeGlobal and
// Cutoff 0. When true, Scope and Cutoff name the deciding rule (for ScopeToken, Cutoff
// is the exp the rule was recorded with).
type Verdict struct {
	Revoked bool
	Scope   Scope
	Cutoff  int64
}

// String is "valid" or, e.g., "revoked by role rule, cutoff 2000".
func (v Verdict) String() string {
	if !v.Revoked {
		return "valid"
	}
	if v.Scope == ScopeToken {
		return "revoked by token rule, exp " + strconv.FormatInt(v.Cutoff, 10)
	}
	return "revoked by " + v.Scope.String() + " rule, cutoff " + strconv.FormatInt(v.Cutoff, 10)
}

// Description is a text for WWW-Authenticate's error_description naming the rule,
// e.g. "token revoked: role permissions changed at 2000". It is plain ASCII without
// quotes or backslashes.
func (v Verdict) Description() string {
	switch {
	case !v.Revoked:
		return "token is valid"
	case v.Scope == ScopeToken:
		return "token revoked: this token was revoked (token rule, exp " + strconv.FormatInt(v.Cutoff, 10) + ")"
	default:
		return "token revoked: " + v.Scope.String() + " permissions changed at " + strconv.FormatInt(v.Cutoff, 10)
	}
}

// Rule is one invalidation record for RevokeBatch: tokens in (Scope, Tenant, Key)
// issued before At are revoked; for ScopeToken, Key is the jti and At the token's exp.
type Rule struct {
	Scope  Scope
	Tenant []byte
	Key    []byte
	At     int64
}

// Stats are figures about a ledger, from Stats.
type Stats struct {
	RuleRecords      uint64        // rule records in the log, duplicates included
	LiveKeys         uint64        // distinct keys with a rule
	ExpiredKeys      uint64        // keys whose rule can no longer revoke an unexpired token
	LogBytes         uint64        // bytes of committed log, header included
	FileBytes        uint64        // size of the file
	IndexBytes       uint64        // bytes of memory held by this handle's index
	MaxTokenLifetime time.Duration // effective maximum token lifetime
	Leeway           time.Duration // clock-skew leeway
}

// Ledger is an open ledger handle, writer (Open) or reader (OpenReader). It is safe for
// concurrent use by many goroutines.
type Ledger struct {
	// mu guards h: every call holds it shared for the duration of its C call, Close
	// holds it exclusively, so Close waits for calls in flight and a closed handle is
	// never used.
	mu     sync.RWMutex
	h      *C.revledger
	writer bool
	path   string // a reader's, to open it afresh (reopen)
}

// Version is the version of the linked revledger library, e.g. "0.1.0".
func Version() string {
	return C.GoString(C.revledger_version())
}

// takeError turns a failed status and its C-allocated message into an *Error, freeing
// the message.
func takeError(status C.revledger_status, msg *C.char) error {
	e := &Error{Status: Status(status)}
	if msg != nil {
		e.Message = C.GoString(msg)
		C.free(unsafe.Pointer(msg))
	}
	return e
}

func cPath(path string) (*C.char, error) {
	for i := 0; i < len(path); i++ {
		if path[i] == 0 {
			return nil, &Error{Status: StatusInvalidArgument, Message: "invalid argument: path contains a NUL byte"}
		}
	}
	return C.CString(path), nil
}

// seconds converts a duration to whole seconds, rounding away from zero so that a
// lifetime is never shortened (and a negative one stays negative: refused).
func seconds(d time.Duration) int64 {
	s := int64(d / time.Second)
	switch r := d % time.Second; {
	case r > 0:
		s++
	case r < 0:
		s--
	}
	return s
}

func newLedger(h *C.revledger, writer bool) *Ledger {
	l := &Ledger{h: h, writer: writer}
	runtime.SetFinalizer(l, (*Ledger).finalize)
	return l
}

// Open opens the ledger at path for writing, creating it if missing, and takes its
// exclusive lock until Close (another writer anywhere gets ErrLocked).
//
// maxTokenLifetime is the longest lifetime of the tokens the ledger must cover (rounded
// up to whole seconds). On creation, 0 means one day. On reopening, 0 keeps the
// ledger's value, a larger value raises it, and a smaller one is ErrInvalidArgument
// (it would let compaction drop rules that issued tokens still need).
func Open(path string, maxTokenLifetime time.Duration) (*Ledger, error) {
	p, err := cPath(path)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(p))
	r := C.rl_open_writer(p, C.int64_t(seconds(maxTokenLifetime)))
	if r.status != C.REVLEDGER_OK {
		return nil, takeError(r.status, r.err)
	}
	return newLedger(r.handle, true), nil
}

// OpenReader opens the ledger at path read-only. It sees every record the writer
// commits on its next Check, without polling.
func OpenReader(path string) (*Ledger, error) {
	h, err := openReaderHandle(path)
	if err != nil {
		return nil, err
	}
	l := newLedger(h, false)
	l.path = path
	return l, nil
}

// openReaderHandle opens a reader's C handle on the ledger at path.
func openReaderHandle(path string) (*C.revledger, error) {
	p, err := cPath(path)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(p))
	r := C.rl_open_reader(p)
	if r.status != C.REVLEDGER_OK {
		return nil, takeError(r.status, r.err)
	}
	return r.handle, nil
}

// reopen gives a reader a fresh handle on the ledger now at its path (its file was
// deleted, replaced or damaged); calls in flight finish on the old handle first. A
// writer keeps its handle (it holds the ledger's lock).
func (l *Ledger) reopen() error {
	if l.writer {
		return nil
	}
	h, err := openReaderHandle(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.h
	if old != nil {
		l.h = h
	}
	l.mu.Unlock()
	if old == nil { // closed meanwhile
		C.revledger_close(h)
		return ErrClosed
	}
	C.revledger_close(old)
	runtime.KeepAlive(l)
	return nil
}

// acquire returns the live handle with l.mu held shared, or ErrClosed (lock released).
func (l *Ledger) acquire() (*C.revledger, error) {
	l.mu.RLock()
	if l.h == nil {
		l.mu.RUnlock()
		return nil, ErrClosed
	}
	return l.h, nil
}

// ptr is the address of b's first byte for C, or NULL for an empty slice. b's backing
// array holds no Go pointers, so cgo allows passing it for the duration of a call.
func ptr(b []byte) *C.uint8_t {
	if len(b) == 0 {
		return nil
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0]))
}

func size(b []byte) C.size_t { return C.size_t(len(b)) }

// Revoke records "scope changed at `at`": tokens in (scope, tenant, key) issued before
// at are revoked. For ScopeToken, key is the jti and at the token's exp. The key is
// empty for ScopeGlobal and ScopeTenant (and the tenant empty for ScopeGlobal),
// non-empty otherwise; tenant and key are at most MaxKeyLen bytes. It returns once the
// record is committed (visible to every reader's next Check); it is durable after Sync.
// On a reader: ErrReadOnly.
func (l *Ledger) Revoke(scope Scope, tenant, key []byte, at int64) error {
	err := l.call(func(h *C.revledger) C.rl_result {
		return C.rl_revoke(h, C.uint32_t(scope), ptr(tenant), size(tenant), ptr(key), size(key), C.int64_t(at))
	})
	runtime.KeepAlive(tenant)
	runtime.KeepAlive(key)
	return err
}

// call runs one C call that returns only a status on the live handle, and turns the
// status into an error. The handle stays open (Close waits) until the call returns.
func (l *Ledger) call(c func(h *C.revledger) C.rl_result) error {
	h, err := l.acquire()
	if err != nil {
		return err
	}
	r := c(h)
	runtime.KeepAlive(l)
	l.mu.RUnlock()
	if r.status != C.REVLEDGER_OK {
		return takeError(r.status, r.err)
	}
	return nil
}

// RevokeNow revokes (scope, tenant, key) as of now: the current time rounded up to the
// next second, so a token issued in the same second counts as issued before. It returns
// the cutoff written. Not for ScopeToken (whose time is the token's exp).
func (l *Ledger) RevokeNow(scope Scope, tenant, key []byte) (int64, error) {
	h, err := l.acquire()
	if err != nil {
		return 0, err
	}
	r := C.rl_revoke_now(h, C.uint32_t(scope), ptr(tenant), size(tenant), ptr(key), size(key))
	runtime.KeepAlive(l)
	runtime.KeepAlive(tenant)
	runtime.KeepAlive(key)
	l.mu.RUnlock()
	if r.status != C.REVLEDGER_OK {
		return 0, takeError(r.status, r.err)
	}
	return int64(r.cutoff), nil
}

// RevokeBatch records every rule in one write: all are checked first, then all are
// committed together, or none is. Follow it with Sync for group commit.
func (l *Ledger) RevokeBatch(rules []Rule) error {
	// The C array holds pointers, so it and the bytes it points to live in C memory:
	// one allocation holding the rules followed by their tenant and key bytes.
	var mem unsafe.Pointer
	if len(rules) > 0 {
		ruleSize := uintptr(C.sizeof_revledger_rule)
		const maxAlloc = 1 << 40
		if uintptr(len(rules)) > maxAlloc/ruleSize {
			return &Error{Status: StatusInvalidArgument, Message: "invalid argument: batch too large"}
		}
		total := uintptr(len(rules)) * ruleSize
		for i := range rules {
			total += uintptr(len(rules[i].Tenant)) + uintptr(len(rules[i].Key))
			if total > maxAlloc {
				return &Error{Status: StatusInvalidArgument, Message: "invalid argument: batch too large"}
			}
		}
		mem = C.malloc(C.size_t(total))
		if mem == nil {
			return &Error{Status: StatusInternal, Message: "internal error: out of memory"}
		}
		defer C.free(mem)
		crules := unsafe.Slice((*C.revledger_rule)(mem), len(rules))
		data := unsafe.Slice((*byte)(mem), total)[uintptr(len(rules))*ruleSize:]
		put := func(b []byte) C.revledger_bytes {
			var out C.revledger_bytes
			if len(b) > 0 {
				n := copy(data, b)
				out.ptr = (*C.uint8_t)(unsafe.Pointer(&data[0]))
				out.len = C.size_t(n)
				data = data[n:]
			}
			return out
		}
		for i := range rules {
			crules[i].scope = C.revledger_scope(rules[i].Scope)
			crules[i].tenant = put(rules[i].Tenant)
			crules[i].key = put(rules[i].Key)
			crules[i].at = C.int64_t(rules[i].At)
		}
	}
	h, err := l.acquire()
	if err != nil {
		return err
	}
	r := C.rl_revoke_batch(h, (*C.revledger_rule)(mem), C.size_t(len(rules)))
	runtime.KeepAlive(l)
	l.mu.RUnlock()
	if r.status != C.REVLEDGER_OK {
		return takeError(r.status, r.err)
	}
	return nil
}

// Sync makes every committed record durable (fdatasync). Many revokes, one Sync: group
// commit. On a reader: ErrReadOnly.
func (l *Ledger) Sync() error {
	return l.call(func(h *C.revledger) C.rl_result { return C.rl_sync(h) })
}

// Refresh brings the handle's index up to date with the file now. Checks do it on
// their own; this moves the work off a request's path (e.g. from a ticker). It also
// makes sure that the file is still the ledger at the handle's path, which a reader
// otherwise does when the kernel notices a change there (inotify) and on one check in
// thousands: a file deleted, or replaced by another ledger (a compaction is followed),
// makes it and every later call on this handle fail: open the ledger again. The
// middlewares do this once a second, and open the ledger again when it fails.
func (l *Ledger) Refresh() error {
	return l.call(func(h *C.revledger) C.rl_result { return C.rl_refresh(h) })
}

// Compact drops the rules that can no longer revoke an unexpired token as of now (Unix
// seconds) by rewriting the ledger and swapping it in atomically; readers follow on
// their next Check. Writer only (ErrReadOnly otherwise).
func (l *Ledger) Compact(now int64) error {
	return l.call(func(h *C.revledger) C.rl_result { return C.rl_compact(h, C.int64_t(now)) })
}

// Stats returns figures about the ledger as of now (Unix seconds).
func (l *Ledger) Stats(now int64) (Stats, error) {
	h, err := l.acquire()
	if err != nil {
		return Stats{}, err
	}
	r := C.rl_stats(h, C.int64_t(now))
	runtime.KeepAlive(l)
	l.mu.RUnlock()
	if r.status != C.REVLEDGER_OK {
		return Stats{}, takeError(r.status, r.err)
	}
	s := r.stats
	return Stats{
		RuleRecords:      uint64(s.rule_records),
		LiveKeys:         uint64(s.live_keys),
		ExpiredKeys:      uint64(s.expired_keys),
		LogBytes:         uint64(s.log_bytes),
		FileBytes:        uint64(s.file_bytes),
		IndexBytes:       uint64(s.index_bytes),
		MaxTokenLifetime: time.Duration(s.max_token_lifetime) * time.Second,
		Leeway:           time.Duration(s.leeway) * time.Second,
	}, nil
}

// Freshness tells how current a ledger fed by `revledger sync` (docs/SYNC.md) is.
type Freshness struct {
	// LastHeard is when the sync process last heard from the stream: a new entry or a
	// heartbeat (about once a second while the stream answers), to the whole second.
	// Zero (IsZero) when no sync process ever recorded a position in this ledger.
	LastHeard time.Time
	// LastID is the id of the last stream entry applied, "<ms>-<seq>", or "" when none
	// was (never synced, or an empty stream).
	LastID string
	// Degraded says why the ledger may lack rules its stream carried (0: it holds every
	// one): bits DegradedSkipped, DegradedRefused, DegradedTrimmed. It stays set until an
	// operator resyncs the ledger and runs `revledger sync --resolve` (docs/SYNC.md §5).
	Degraded uint8
}

// Bits of Freshness.Degraded.
const (
	DegradedSkipped uint8 = 1 // entries that were not valid rules were skipped
	DegradedRefused uint8 = 2 // entries were refused for their signature
	DegradedTrimmed uint8 = 4 // the stream was trimmed past the ledger's position
)

// IsDegraded reports whether the ledger may lack rules its stream carried.
func (f Freshness) IsDegraded() bool { return f.Degraded != 0 }

// degradedReasons is the Degraded bits in words.
func degradedReasons(bits uint8) string {
	var out []string
	for _, r := range []struct {
		bit  uint8
		text string
	}{{DegradedSkipped, "entries that were not valid rules were skipped"},
		{DegradedRefused, "entries were refused for their signature"},
		{DegradedTrimmed, "the stream was trimmed past the ledger's position"}} {
		if bits&r.bit != 0 {
			out = append(out, r.text)
		}
	}
	return strings.Join(out, "; ")
}

// Age is how long before now the ledger last heard from its stream (never negative),
// and false when it never did.
func (f Freshness) Age(now time.Time) (time.Duration, bool) {
	if f.LastHeard.IsZero() {
		return 0, false
	}
	if d := now.Sub(f.LastHeard); d > 0 {
		return d, true
	}
	return 0, true
}

// Freshness reports when the ledger last heard from the stream that feeds it and the
// last entry applied (revledger_freshness). A ledger written only through Revoke has
// never heard from a stream: the zero Freshness. For a check on every request,
// Middleware's WithMaxStaleness reads the time alone, without a lock.
func (l *Ledger) Freshness() (Freshness, error) {
	h, err := l.acquire()
	if err != nil {
		return Freshness{}, err
	}
	r := C.rl_freshness(h, 1)
	runtime.KeepAlive(l)
	l.mu.RUnlock()
	if r.status != C.REVLEDGER_OK {
		return Freshness{}, takeError(r.status, r.err)
	}
	var f Freshness
	if r.last_heard != 0 {
		f.LastHeard = time.Unix(int64(r.last_heard), 0)
	}
	if r.id_ms != 0 || r.id_seq != 0 {
		f.LastID = strconv.FormatUint(uint64(r.id_ms), 10) + "-" + strconv.FormatUint(uint64(r.id_seq), 10)
	}
	f.Degraded = uint8(r.degraded)
	return f, nil
}

// lastHeard is Freshness().LastHeard as Unix seconds (0: never) and Freshness().Degraded,
// without the lock that reading the entry id takes.
func (l *Ledger) lastHeard() (int64, uint8, error) {
	h, err := l.acquire()
	if err != nil {
		return 0, 0, err
	}
	r := C.rl_freshness(h, 0)
	runtime.KeepAlive(l)
	l.mu.RUnlock()
	if r.status != C.REVLEDGER_OK {
		return 0, 0, takeError(r.status, r.err)
	}
	return int64(r.last_heard), uint8(r.degraded), nil
}

// roleScratch holds the roles of a token with more than four, concatenated, for C.
type roleScratch struct {
	buf  []byte
	lens []C.size_t
}

var roleScratchPool = sync.Pool{New: func() interface{} { return new(roleScratch) }}

// Check reports whether the token is revoked and, if so, by which rule. It is safe to
// call from many goroutines at once, concurrently with Revoke on the same writer. An
// error never means "valid": the caller decides what to do with a token it could not
// check. A token with up to four roles is checked without allocating.
func (l *Ledger) Check(t *Token) (Verdict, error) {
	if t == nil {
		return Verdict{}, &Error{Status: StatusInvalidArgument, Message: "invalid argument: token is nil"}
	}
	roles := t.Roles
	var r0, r1, r2, r3 []byte
	var sc *roleScratch
	var rbuf *C.uint8_t
	var rlens *C.size_t
	switch len(roles) {
	case 4:
		r3 = roles[3]
		fallthrough
	case 3:
		r2 = roles[2]
		fallthrough
	case 2:
		r1 = roles[1]
		fallthrough
	case 1:
		r0 = roles[0]
	case 0:
	default:
		// The roles array C receives holds pointers, so it cannot be Go memory; C
		// builds it from one pointer-free buffer plus the lengths.
		sc = roleScratchPool.Get().(*roleScratch)
		sc.buf = sc.buf[:0]
		sc.lens = sc.lens[:0]
		for _, role := range roles {
			sc.buf = append(sc.buf, role...)
			sc.lens = append(sc.lens, C.size_t(len(role)))
		}
		rbuf = ptr(sc.buf)
		rlens = &sc.lens[0]
	}

	h, err := l.acquire()
	if err != nil {
		putScratch(sc)
		return Verdict{}, err
	}
	r := C.rl_check(h,
		ptr(t.Tenant), size(t.Tenant),
		ptr(t.Subject), size(t.Subject),
		ptr(t.Client), size(t.Client),
		ptr(t.Session), size(t.Session),
		ptr(t.TokenID), size(t.TokenID),
		ptr(r0), size(r0), ptr(r1), size(r1), ptr(r2), size(r2), ptr(r3), size(r3),
		rbuf, rlens, C.size_t(len(roles)), C.int64_t(t.IssuedAt))
	runtime.KeepAlive(l)
	runtime.KeepAlive(t)
	l.mu.RUnlock()
	putScratch(sc)
	if r.status != C.REVLEDGER_OK {
		return Verdict{}, takeError(r.status, r.err)
	}
	return Verdict{
		Revoked: bool(r.verdict.revoked),
		Scope:   Scope(r.verdict.scope),
		Cutoff:  int64(r.verdict.cutoff),
	}, nil
}

func putScratch(sc *roleScratch) {
	// Keep pooled buffers small; a token with huge claims does not pin memory.
	if sc != nil && cap(sc.buf) <= 64<<10 && cap(sc.lens) <= 1024 {
		roleScratchPool.Put(sc)
	}
}

// Close closes the handle: a writer first makes its records durable (the error of that
// sync is returned) and then releases its lock. Close waits for calls in flight on
// other goroutines; calls after Close return ErrClosed. Closing twice is a no-op.
func (l *Ledger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.h
	if h == nil {
		return nil
	}
	l.h = nil
	runtime.SetFinalizer(l, nil)
	var err error
	if l.writer {
		if r := C.rl_sync(h); r.status != C.REVLEDGER_OK {
			err = takeError(r.status, r.err)
		}
	}
	C.revledger_close(h)
	runtime.KeepAlive(l)
	return err
}

func (l *Ledger) finalize() {
	_ = l.Close()
}

// cStatusName is revledger_status_name from the C library (the tests compare it with
// Status.String, since test files cannot use cgo).
func cStatusName(s Status) string {
	return C.GoString(C.revledger_status_name(C.uint32_t(s)))
}

// cVersionPtr calls revledger_version without converting the result (the benchmark's
// baseline for one cgo call).
func cVersionPtr() unsafe.Pointer {
	return unsafe.Pointer(C.revledger_version())
}

// checkRepeatInC checks a token with exactly three roles n times from one C call,
// for the benchmarks.
func (l *Ledger) checkRepeatInC(n int, t *Token) (Verdict, error) {
	h, err := l.acquire()
	if err != nil {
		return Verdict{}, err
	}
	r0, r1, r2 := t.Roles[0], t.Roles[1], t.Roles[2]
	r := C.rl_check_repeat(C.size_t(n), h, ptr(t.Tenant), size(t.Tenant), ptr(t.Subject), size(t.Subject),
		ptr(t.Client), size(t.Client), ptr(t.Session), size(t.Session), ptr(t.TokenID), size(t.TokenID),
		ptr(r0), size(r0), ptr(r1), size(r1), ptr(r2), size(r2), C.int64_t(t.IssuedAt))
	runtime.KeepAlive(l)
	runtime.KeepAlive(t)
	l.mu.RUnlock()
	if r.status != C.REVLEDGER_OK {
		return Verdict{}, takeError(r.status, r.err)
	}
	return Verdict{Revoked: bool(r.verdict.revoked), Scope: Scope(r.verdict.scope), Cutoff: int64(r.verdict.cutoff)}, nil
}
