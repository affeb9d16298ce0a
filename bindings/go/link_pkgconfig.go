//go:build revledger_pkgconfig

package revledger

// With -tags revledger_pkgconfig: the library installed by scripts/cinstall (or a
// distribution package), found through pkg-config (revledger.pc; PKG_CONFIG_PATH when
// the prefix is not a system one). It links the shared library librevledger.so, so
// the loader must find it at run time (a system prefix, ldconfig, or LD_LIBRARY_PATH).

/*
#cgo pkg-config: revledger
*/
import "C"
