//! Gives the shared library its soname, as `cargo cinstall` (cargo-c) does: the ABI
//! level is the major version, or `0.<minor>` while the major version is 0 (Cargo's
//! semver: 0.1 and 0.2 are incompatible), so `librevledger.so.0.1` for 0.1.z.
//! `scripts/cinstall` installs `librevledger.so.<version>` with the soname and
//! development symlinks beside it.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let elf = matches!(
        os.as_str(),
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd" | "dragonfly" | "illumos"
    );
    if !elf {
        return;
    }
    let major = env!("CARGO_PKG_VERSION_MAJOR");
    let minor = env!("CARGO_PKG_VERSION_MINOR");
    let abi = if major == "0" {
        format!("0.{minor}")
    } else {
        major.to_owned()
    };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,librevledger.so.{abi}");
}
