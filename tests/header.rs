//! The committed C header must be exactly what cbindgen generates from the code.

use std::path::Path;

/// The version macros of the header, from Cargo.toml's version (the one version of the
/// crate, the header, revledger.pc and the Python and Go packages; tests/version.rs).
fn version_macros() -> String {
    format!(
        "\n/** The version of revledger this header belongs to (revledger_version() says which\n \
         * library is loaded). */\n\
         #define REVLEDGER_VERSION_MAJOR {}\n\
         #define REVLEDGER_VERSION_MINOR {}\n\
         #define REVLEDGER_VERSION_PATCH {}\n\
         #define REVLEDGER_VERSION_STRING \"{}\"",
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
        env!("CARGO_PKG_VERSION"),
    )
}

#[test]
fn committed_header_matches_a_fresh_generation() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config =
        cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    config.after_includes = Some(version_macros());
    let mut fresh = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut fresh);
    let path = root.join("include/revledger.h");
    if std::env::var_os("REVLEDGER_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write header");
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/revledger.h differs from what cbindgen generates from src/ffi.rs; \
         run `REVLEDGER_BLESS=1 cargo test --test header` and commit the result"
    );
}

/// Every name the header declares (typedefs and functions) must be distinct: in C a
/// typedef and a function cannot share a name (`revledger_stats` once was both, and no C
/// file including the header compiled).
#[test]
fn header_type_and_function_names_are_distinct() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = std::fs::read_to_string(root.join("include/revledger.h")).expect("header");
    let mut types = Vec::new();
    let mut functions = Vec::new();
    for line in header.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix('}') {
            let name = rest.trim().trim_end_matches(';').trim();
            if !name.is_empty() {
                types.push(name.to_owned());
            }
        } else if let Some(rest) = line.strip_prefix("typedef struct ") {
            if let Some(name) = rest.split_whitespace().last() {
                types.push(name.trim_end_matches(';').to_owned());
            }
        }
        if !line.starts_with('*') && !line.starts_with("/*") && !line.starts_with("//") {
            if let Some(open) = line.find('(') {
                if let Some(name) = line[..open].split_whitespace().last() {
                    let name = name.trim_start_matches('*');
                    if name.starts_with("revledger_") {
                        functions.push(name.to_owned());
                    }
                }
            }
        }
    }
    assert!(types.iter().any(|t| t == "revledger_verdict"), "{types:?}");
    assert!(
        functions.iter().any(|f| f == "revledger_check"),
        "{functions:?}"
    );
    for f in &functions {
        assert!(
            !types.contains(f),
            "`{f}` is both a type and a function in include/revledger.h"
        );
    }
}

/// The header compiles as strict C99 (when a C compiler is installed; CI has one).
#[test]
fn header_compiles_as_c() {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("use_header.c");
    std::fs::write(
        &src,
        "#include \"revledger.h\"\n\
         int main(void) { revledger_statistics s; (void)s; \
         return (int)sizeof(revledger_token) == 0; }\n",
    )
    .unwrap();
    let out = std::process::Command::new(&cc)
        .args([
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Wpedantic",
            "-Werror",
            "-fsyntax-only",
        ])
        .arg("-I")
        .arg(root.join("include"))
        .arg(&src)
        .output();
    match out {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "no C compiler ({cc}); header_type_and_function_names_are_distinct still ran"
            );
        }
        Err(e) => panic!("running {cc}: {e}"),
        Ok(out) => assert!(
            out.status.success(),
            "include/revledger.h does not compile as C:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}
