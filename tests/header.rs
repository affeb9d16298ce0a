//! The committed C header must be exactly what cbindgen generates from the code.

use std::path::Path;

#[test]
fn committed_header_matches_a_fresh_generation() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
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
