//! The kernel's notices of changes at readers' paths (inotify), so that a reader learns
//! at once that its file was deleted, renamed away or replaced (DESIGN.md §3, fail
//! closed), without a system call on the check path.
//!
//! One thread per process (started by the first reader, all signals blocked so that the
//! host's handlers run in its own threads) reads one inotify instance that watches the
//! directory of every open reader's path. A notice about a reader's file name has that
//! reader compare its file with the path at once, as a check does on its countdown
//! (src/watch.rs): a deleted or replaced file marks the handle lost, so its next check
//! fails; a compaction is left to the next check, which follows the file's retired mark.
//! The notices do not replace the countdown and `refresh`: they are what
//! makes the common case immediate, and where inotify is unavailable (its limits
//! reached, a file system that sends no notices, such as NFS) the countdown still holds.
//!
//! A forked child does not inherit the thread: its first reader starts its own instance
//! and registry, and leaves the parent's alone (it may have been locked at the fork).
//! The thread is made with `pthread_create`, not `std::thread`, and keeps its state in
//! the process's registry, not on its stack: a child forked while it waits inherits
//! nothing that only the thread (gone in the child) pointed to, which leak checkers
//! such as valgrind would report as lost in every child.

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::ErrorKind;
use std::path::Path;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

/// A handle told of changes at its path.
pub(crate) trait Watched: Send + Sync {
    /// Something happened to the directory entry of the handle's path (deleted, renamed,
    /// replaced): compare the file with the path now. Runs on the notices' thread.
    fn path_changed(&self);
}

/// A handle's place among the watched; dropping it ends the notices (and the directory's
/// watch, with its last handle).
pub(crate) struct Registration {
    instance: u64,
    wd: i32,
    id: u64,
}

/// What a directory's entries do that concerns a reader's file.
const MASK: WatchMask = WatchMask::DELETE
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR);

/// The watched handles of one process, and the watches of their directories.
struct Registry {
    watches: Watches,
    dirs: HashMap<i32, Dir>,
}

struct Dir {
    wd: WatchDescriptor,
    /// Registration id, the file name in the directory, the handle.
    handles: Vec<(u64, OsString, Weak<dyn Watched>)>,
}

/// One process's registry: made again in a forked child, whose copy of the parent's
/// may be locked and whose thread does not exist.
///
/// Its locks are `std`'s (futexes): `parking_lot` would give the thread a thread-local
/// record, allocated, the first time it waited.
struct Cell {
    pid: u32,
    instance: u64,
    /// `None`: no instance could be made (inotify's limits, say), or its thread stopped.
    registry: Mutex<Option<Registry>>,
    /// The instance the thread reads (locked by the thread while it runs).
    inotify: Mutex<Option<Inotify>>,
    /// In a forked child, the parent's cell: never used (it may be locked), only kept
    /// reachable, as everything the parent's thread held is.
    _forked_from: AtomicPtr<Cell>,
}

impl Cell {
    fn registry(&self) -> MutexGuard<'_, Option<Registry>> {
        // A panic while it was held left nothing half-done that matters here.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// This process's cell, once a reader was opened (a leaked `Box`: it lives as long as
/// the process, and a forked child leaves its copy of the parent's untouched).
static CELL: AtomicPtr<Cell> = AtomicPtr::new(std::ptr::null_mut());
static INSTANCES: AtomicU64 = AtomicU64::new(1);
/// Registration ids, unique in the process whatever the instance.
static REGISTRATIONS: AtomicU64 = AtomicU64::new(1);

/// This process's cell, made on first use (and again in a forked child).
fn cell() -> &'static Cell {
    let pid = std::process::id();
    let current = CELL.load(Ordering::Acquire);
    // SAFETY: a non-null CELL points to a leaked `Box<Cell>`, never freed.
    if let Some(c) = unsafe { current.as_ref() } {
        if c.pid == pid {
            return c;
        }
    }
    let fresh = Box::into_raw(Box::new(Cell {
        pid,
        instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
        registry: Mutex::new(None),
        inotify: Mutex::new(None),
        _forked_from: AtomicPtr::new(current),
    }));
    match CELL.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: just leaked from a `Box`, never freed.
        Ok(_) => unsafe { &*fresh },
        Err(other) => {
            // Another thread of this process made it first: use theirs.
            // SAFETY: `fresh` came from `Box::into_raw` above and was never shared.
            drop(unsafe { Box::from_raw(fresh) });
            // SAFETY: a non-null CELL points to a leaked `Box<Cell>`, never freed.
            unsafe { &*other }
        }
    }
}

/// Has `handle` told when the directory entry of `path` (absolute) changes. `None` when
/// the kernel cannot watch it (the countdown and `refresh` still hold).
pub(crate) fn watch(path: &Path, handle: Weak<dyn Watched>) -> Option<Registration> {
    let (dir, name) = (path.parent()?, path.file_name()?);
    let cell = cell();
    let mut guard = cell.registry();
    if guard.is_none() {
        *guard = start(cell);
    }
    let registry = guard.as_mut()?;
    let wd = registry.watches.add(dir, MASK).ok()?;
    let id = REGISTRATIONS.fetch_add(1, Ordering::Relaxed);
    let dir = registry
        .dirs
        .entry(wd.get_watch_descriptor_id())
        .or_insert_with(|| Dir {
            wd: wd.clone(),
            handles: Vec::new(),
        });
    dir.handles.retain(|(_, _, h)| h.strong_count() > 0);
    dir.handles.push((id, name.to_owned(), handle));
    Some(Registration {
        instance: cell.instance,
        wd: wd.get_watch_descriptor_id(),
        id,
    })
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: a non-null CELL points to a leaked `Box<Cell>`, never freed.
        let Some(cell) = (unsafe { CELL.load(Ordering::Acquire).as_ref() }) else {
            return;
        };
        // Another process's (a parent's, across a fork) or an earlier instance: not ours.
        if cell.pid != std::process::id() || cell.instance != self.instance {
            return;
        }
        let mut guard = cell.registry();
        let Some(registry) = guard.as_mut() else {
            return;
        };
        let Some(dir) = registry.dirs.get_mut(&self.wd) else {
            return;
        };
        dir.handles.retain(|(id, _, _)| *id != self.id);
        if dir.handles.is_empty() {
            if let Some(dir) = registry.dirs.remove(&self.wd) {
                let _ = registry.watches.remove(dir.wd); // gone already if the directory was
            }
        }
    }
}

/// A new inotify instance and the thread that reads it. Called with the registry locked.
fn start(cell: &'static Cell) -> Option<Registry> {
    let inotify = Inotify::init().ok()?;
    let watches = inotify.watches();
    // The thread of an earlier instance has stopped (the registry was `None`): its lock
    // is free.
    *cell.inotify.lock().unwrap_or_else(PoisonError::into_inner) = Some(inotify);
    if !spawn(cell) {
        *cell.inotify.lock().unwrap_or_else(PoisonError::into_inner) = None;
        return None;
    }
    Some(Registry {
        watches,
        dirs: HashMap::new(),
    })
}

/// Starts the thread of `cell`, detached, with every signal blocked: a process's signals
/// (nginx's SIGHUP and SIGQUIT, a Go or Python runtime's) must reach the threads that
/// handle them.
fn spawn(cell: &'static Cell) -> bool {
    extern "C" fn run(arg: *mut libc::c_void) -> *mut libc::c_void {
        // SAFETY: `arg` is the `&'static Cell` that `spawn` passed.
        let cell: &'static Cell = unsafe { &*(arg as *const Cell) };
        // No unwinding out of an `extern "C"` function. After a panic nobody reads the
        // notices any more: the registry goes, so that the next reader starts afresh.
        // (Returning normally, `read_notices` has done that itself, or the registry is
        // another instance's by now.)
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_notices(cell))).is_err() {
            *cell.registry() = None;
        }
        std::ptr::null_mut()
    }
    // SAFETY: `attr`, `all`, `before` and `thread` are plain data, initialised by
    // `pthread_attr_init`, `sigfillset` and `pthread_create` before they are read, and
    // valid for each call; `run` matches pthread's start routine and takes the
    // `&'static Cell` as its argument (it outlives the thread). A thread inherits the
    // signal mask of its creator; this thread's mask is put back after.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_attr_init(&mut attr) != 0 {
            return false;
        }
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        libc::pthread_attr_setstacksize(&mut attr, 256 * 1024);
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut before: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut before);
        let mut thread: libc::pthread_t = std::mem::zeroed();
        let arg = cell as *const Cell as *mut libc::c_void;
        let created = libc::pthread_create(&mut thread, &attr, run, arg) == 0;
        libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut());
        libc::pthread_attr_destroy(&mut attr);
        if created {
            libc::pthread_setname_np(thread, c"revledger-watch".as_ptr());
        }
        created
    }
}

/// The thread: reads notices and has the handles they concern compare their files.
fn read_notices(cell: &'static Cell) {
    let mut reading = cell.inotify.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(inotify) = reading.as_mut() else {
        return;
    };
    let mut buffer = [0u8; 4096];
    loop {
        let events = match inotify.read_events_blocking(&mut buffer) {
            Ok(events) => events,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                // The countdown and `refresh` remain; a later reader starts afresh.
                *cell.registry() = None;
                return;
            }
        };
        let mut concerned: Vec<Arc<dyn Watched>> = Vec::new();
        {
            let mut guard = cell.registry();
            let Some(registry) = guard.as_mut() else {
                return;
            };
            for e in events {
                let wd = e.wd.get_watch_descriptor_id();
                let whole = e.mask.intersects(
                    EventMask::DELETE_SELF
                        | EventMask::MOVE_SELF
                        | EventMask::IGNORED
                        | EventMask::UNMOUNT,
                );
                if e.mask.contains(EventMask::Q_OVERFLOW) {
                    // Notices were lost: every handle compares.
                    for dir in registry.dirs.values() {
                        upgrade(dir.handles.iter(), &mut concerned);
                    }
                } else if let Some(dir) = registry.dirs.get(&wd) {
                    let named = dir
                        .handles
                        .iter()
                        .filter(|(_, name, _)| whole || Some(name.as_os_str()) == e.name);
                    upgrade(named, &mut concerned);
                }
                if e.mask.contains(EventMask::IGNORED) {
                    registry.dirs.remove(&wd); // the kernel dropped the watch
                }
            }
        }
        // Outside the lock: a handle whose last reference this is drops here, and its
        // registration takes the lock.
        for handle in concerned {
            handle.path_changed();
        }
    }
}

fn upgrade<'a>(
    handles: impl Iterator<Item = &'a (u64, OsString, Weak<dyn Watched>)>,
    into: &mut Vec<Arc<dyn Watched>>,
) {
    into.extend(handles.filter_map(|(_, _, h)| h.upgrade()));
}
