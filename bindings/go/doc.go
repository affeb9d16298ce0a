// Package revledger answers "is this JWT revoked?" from a revledger ledger: an
// append-only, memory-mapped file of invalidation records ("scope S changed at time T")
// shared by every process on the host. It is a cgo binding over the C ABI of the Rust
// crate (include/revledger.h); the semantics are those of DESIGN.md §2.
//
// # Building
//
// The package links the revledger C library in one of two ways.
//
// From a checkout of the repository (the default): the cgo directives of link_repo.go
// point at the repository layout,
//
//	#cgo CFLAGS: -I${SRCDIR}/../../include
//	#cgo LDFLAGS: ${SRCDIR}/../../target/release/librevledger.a -lm -ldl -lpthread
//
// so build the static library once at the repository root, then build or test as usual:
//
//	cargo build --release --lib          # produces target/release/librevledger.a
//	cd bindings/go && go test ./...
//
// Rebuild the Rust library whenever src/ changes: Go does not track the archive.
//
// Against an installed library, with the build tag revledger_pkgconfig: link_pkgconfig.go
// says `#cgo pkg-config: revledger`, which finds the header and the shared library that
// scripts/cinstall (or a distribution package) installed:
//
//	scripts/cinstall --prefix /usr/local       # at the repository root
//	go build -tags revledger_pkgconfig ./...   # PKG_CONFIG_PATH=<prefix>/lib/pkgconfig for
//	                                           # another prefix; the loader must find
//	                                           # librevledger.so at run time
//
// Either way cgo must be enabled (CGO_ENABLED=1) and a C toolchain installed.
// PackageVersion, HeaderVersion and Version name the versions of this package, the
// header and the linked library; they are one.
//
// # Use
//
// One process writes (Open: it holds the ledger's exclusive lock); any number of
// processes read (OpenReader) and see every committed revocation on their next Check.
// A *Ledger is safe for concurrent use by many goroutines: Check runs concurrently with
// other checks and, on a writer, with Revoke. Close waits for calls in flight; calls
// after Close return ErrClosed. A Ledger that becomes unreachable without Close is
// closed by a finalizer, but relying on it keeps a writer's lock for an unknown time.
//
// Check never reports a token as valid because it could not look: an error (for
// instance ErrCorrupt when the file became unreadable) is an error, and what the
// gateway does with it is the gateway's choice. Middleware makes that choice explicit
// (503 by default).
//
// Errors are *Error values carrying the C status and the library's message; compare
// them with errors.Is against ErrInvalidArgument, ErrIO, ErrCorrupt, ErrLocked,
// ErrReadOnly, ErrIncompatible, ErrInternal and ErrClosed.
//
// Times are Unix seconds, as JWT iat/exp are.
//
// # Many hosts
//
// On a fleet, one `revledger sync` process per host feeds the host's ledger from a Redis
// stream (docs/SYNC.md); gateways open it with OpenReader. The permission system
// publishes rules with Publish or a Publisher (one XADD per rule, trimming the stream by
// age), or with any Redis client. Freshness tells when the ledger last heard from the
// stream, and Middleware's WithMaxStaleness refuses valid tokens with 503 once that is
// longer ago than the gateway accepts:
//
//	id, err := revledger.Publish(ctx, "redis://redis.internal:6379/", "revocations",
//		revledger.Rule{Scope: revledger.ScopeRole, Tenant: []byte("acme"),
//			Key: []byte("super_admin"), At: revledger.NowCutoff()})
//
//	h := revledger.Middleware(api, gateway, claims, revledger.WithMaxStaleness(10*time.Second))
package revledger
