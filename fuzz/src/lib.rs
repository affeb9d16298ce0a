//! Helpers shared by the fuzz targets: a scratch directory on tmpfs, fix-ups that let the
//! fuzzer get past checksums (`open_file`), and the plain reference model of DESIGN.md §2
//! that the targets compare revledger's answers with (`model`). tests/faults.rs includes
//! `model.rs` and `open_file.rs` to replay tests/fuzz-regressions.

pub mod model;
pub mod open_file;

pub use model::{token_for, Model, OwnedRule};
pub use open_file::fix_frame_crcs;

use std::path::Path;

/// A scratch directory, on tmpfs when there is one (fsync is free there).
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::Builder::new()
            .prefix("revledger-fuzz")
            .tempdir_in(shm)
        {
            return d;
        }
    }
    tempfile::tempdir().expect("a temporary directory")
}
