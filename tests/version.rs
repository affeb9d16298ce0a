//! One version across the crate, the C header, the Go package, the Python package and
//! the changelog (CHANGELOG.md); revledger.pc is written from the crate's version by
//! scripts/cinstall, and tests/install.sh checks it against the header and the library;
//! the Python tests check the installed distribution against the compiled library.

use std::path::Path;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The value of `#define NAME value` in `text`.
fn define<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("#define ")?.trim_start();
        let value = rest.strip_prefix(name)?;
        value.starts_with(char::is_whitespace).then(|| value.trim())
    })
}

#[test]
fn the_library_reports_the_crate_version() {
    assert_eq!(revledger::VERSION, VERSION);
    // SAFETY: revledger_version returns a pointer to a static NUL-terminated string.
    let c = unsafe { std::ffi::CStr::from_ptr(revledger::ffi::revledger_version()) };
    assert_eq!(c.to_str().unwrap(), VERSION);
}

#[test]
fn the_c_header_has_the_crate_version() {
    let header = read("include/revledger.h");
    let parts: Vec<&str> = VERSION.split('.').collect();
    assert_eq!(parts.len(), 3, "{VERSION}");
    for (name, part) in ["MAJOR", "MINOR", "PATCH"].iter().zip(&parts) {
        let macro_name = format!("REVLEDGER_VERSION_{name}");
        assert_eq!(
            define(&header, &macro_name),
            Some(*part),
            "{macro_name} in include/revledger.h (regenerate: REVLEDGER_BLESS=1 cargo test --test header)"
        );
    }
    assert_eq!(
        define(&header, "REVLEDGER_VERSION_STRING"),
        Some(format!("\"{VERSION}\"").as_str())
    );
}

#[test]
fn the_go_package_has_the_crate_version() {
    let go = read("bindings/go/version.go");
    let line = go
        .lines()
        .find(|l| l.starts_with("const PackageVersion = "))
        .expect("const PackageVersion in bindings/go/version.go");
    assert_eq!(
        line,
        format!("const PackageVersion = \"{VERSION}\""),
        "bindings/go/version.go"
    );
}

#[test]
fn the_python_package_takes_the_crate_version() {
    // maturin writes the wheel's version from bindings/python/Cargo.toml, which takes the
    // workspace's (every_workspace_crate_takes_the_workspace_version); the Python tests
    // check the installed distribution's version against the compiled library's.
    let pyproject = read("bindings/python/pyproject.toml");
    assert!(
        pyproject.contains("dynamic = [\"version\"]"),
        "bindings/python/pyproject.toml must take its version from Cargo.toml"
    );
    assert!(
        !pyproject
            .lines()
            .any(|l| l.trim_start().starts_with("version = ")),
        "bindings/python/pyproject.toml must not state a version of its own"
    );
    assert!(pyproject.contains("build-backend = \"maturin\""));
}

#[test]
fn the_changelog_has_an_entry_for_the_version_and_its_file_format() {
    let changelog = read("CHANGELOG.md");
    let heading = format!("## [{VERSION}]");
    let entry = changelog
        .split("\n## ")
        .find(|e| format!("## {e}").starts_with(&heading))
        .unwrap_or_else(|| panic!("CHANGELOG.md has no `{heading}` entry"));
    assert!(
        entry.contains("File format: version"),
        "the CHANGELOG.md entry for {VERSION} names no file format version"
    );
    assert!(
        changelog.contains("## [Unreleased]"),
        "CHANGELOG.md keeps an Unreleased entry"
    );
}

#[test]
fn every_workspace_crate_takes_the_workspace_version() {
    let root = read("Cargo.toml");
    assert!(
        root.contains(&format!("[workspace.package]\nversion = \"{VERSION}\"")),
        "Cargo.toml: [workspace.package] version"
    );
    for manifest in ["Cargo.toml", "cli/Cargo.toml", "bindings/python/Cargo.toml"] {
        let text = read(manifest);
        let package = text.split("[package]").nth(1).expect("[package]");
        let package = package.split("\n[").next().unwrap();
        assert!(
            package.contains("version.workspace = true"),
            "{manifest}: the package must say version.workspace = true"
        );
    }
}
