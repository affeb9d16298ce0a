package revledger

import "testing"

// The package, the header it was compiled against and the library it linked are one
// version (tests/version.rs checks PackageVersion against Cargo.toml).
func TestVersionsAgree(t *testing.T) {
	if got := HeaderVersion(); got != PackageVersion {
		t.Errorf("header version %q, package version %q", got, PackageVersion)
	}
	if got := Version(); got != PackageVersion {
		t.Errorf("library version %q, package version %q", got, PackageVersion)
	}
}
