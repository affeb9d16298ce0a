//go:build !revledger_pkgconfig

package revledger

// The default: the static library of the repository this package sits in, built by
// `cargo build --release --lib` at its root. Build with -tags revledger_pkgconfig to
// link an installed library through pkg-config instead (link_pkgconfig.go).

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: ${SRCDIR}/../../target/release/librevledger.a -lm -ldl -lpthread
*/
import "C"
