//! Handles inherited across `fork`. A child must not use its parent's handles: a
//! writer's would append at an offset the parent moves on from (two writers), and
//! dropping one could block on a lock a parent thread held at the fork. Every fork bumps
//! a generation counter in the child; a handle remembers the generation it was opened
//! in and, in any other, refuses every call and is leaked rather than dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The current fork generation: 0 in the process that loaded the module, +1 in each
/// forked child (and grandchild).
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

extern "C" fn after_fork_in_child() {
    // Async-signal-safe: one atomic add, nothing else.
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// Registers the child handler with `pthread_atfork`, once per process (it also runs for
/// `os.fork()`, multiprocessing's "fork" start method, and forks made from C).
pub fn install_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a plain function with no captured state; pthread_atfork only
        // stores the pointer. A failure (ENOMEM) leaves fork detection off, which the
        // tests would show; there is nothing better to do at import time.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
}
