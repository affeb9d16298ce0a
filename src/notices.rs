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

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::ErrorKind;
use std::path::Path;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

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
struct Cell {
    pid: u32,
    instance: u64,
    /// `None`: no instance could be made (inotify's limits, say), or its thread stopped.
    registry: Mutex<Option<Registry>>,
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
    let mut guard = cell.registry.lock();
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
        let mut guard = cell.registry.lock();
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

/// A new inotify instance and the thread that reads it.
fn start(cell: &'static Cell) -> Option<Registry> {
    let inotify = Inotify::init().ok()?;
    let watches = inotify.watches();
    spawn_without_signals(move || read_notices(inotify, cell)).ok()?;
    Some(Registry {
        watches,
        dirs: HashMap::new(),
    })
}

/// Spawns `f` on a thread that blocks every signal: a process's signals (nginx's
/// SIGHUP, SIGQUIT, a Go or Python runtime's) must reach the threads that handle them.
fn spawn_without_signals(f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    // SAFETY: `sigset_t` is plain data, initialised by `sigfillset` before use;
    // `pthread_sigmask` reads and writes the two sets, valid for the calls. A thread
    // inherits the mask of the thread that creates it; this thread's is put back after.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut before: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut before);
        let spawned = std::thread::Builder::new()
            .name("revledger-notices".into())
            .stack_size(128 * 1024)
            .spawn(f);
        libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut());
        spawned.map(drop)
    }
}

/// The thread: reads notices and has the handles they concern verify their files.
fn read_notices(mut inotify: Inotify, cell: &'static Cell) {
    let mut buffer = [0u8; 4096];
    loop {
        let events = match inotify.read_events_blocking(&mut buffer) {
            Ok(events) => events,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                // The countdown and `refresh` remain; a later reader starts afresh.
                *cell.registry.lock() = None;
                return;
            }
        };
        let mut concerned: Vec<Arc<dyn Watched>> = Vec::new();
        {
            let mut guard = cell.registry.lock();
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
                    // Notices were lost: every handle verifies.
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
