//! Disk-full protection. RocksDB that runs out of space mid-write stops accepting writes until
//! it is reopened (its background error state), and a flush or compaction that cannot finish
//! can leave the node unable to restart. So Shoal refuses object and hint writes itself while
//! the data directory's filesystem has less than `storage.min_free_bytes` available, well
//! before RocksDB would fail. Reads, deletes of data this node no longer owns, tombstone GC
//! and node metadata (a few bytes) still go through. When space returns the next check lets
//! writes in again: nothing to restart.
//!
//! The free space is read with `statvfs` (space available to an unprivileged user) at most
//! once per [`SpaceGuard::REFRESH`], on the write path, so a burst of writes cannot run more
//! than one refresh interval past the limit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::{info, warn};

use crate::store::StoreError;

/// Where the free space comes from: the real filesystem, or a test's number.
pub trait FreeSpace: Send + Sync {
    /// Bytes available for new data.
    fn available(&self) -> std::io::Result<u64>;
}

/// `statvfs` of a directory: `f_bavail × f_frsize`, what a non-root writer can still use.
pub struct Statvfs(PathBuf);

impl Statvfs {
    pub fn new(path: &Path) -> Self {
        Self(path.to_path_buf())
    }
}

impl FreeSpace for Statvfs {
    fn available(&self) -> std::io::Result<u64> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.0.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `path` is a valid NUL-terminated string and `stat` a writable statvfs that
        // the call fills in; nothing is read from it unless the call succeeded.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
    }
}

/// Refuses writes while free space is under a limit; see the module docs.
pub struct SpaceGuard {
    probe: Box<dyn FreeSpace>,
    min_free: u64,
    origin: Instant,
    /// When the free space was last read, in µs since `origin` (0: never).
    checked_us: AtomicU64,
    free: AtomicU64,
    full: AtomicBool,
    refreshing: Mutex<()>,
}

impl SpaceGuard {
    /// How stale the free-space reading may get before a write reads it again.
    pub const REFRESH: Duration = Duration::from_millis(100);

    pub fn new(probe: Box<dyn FreeSpace>, min_free: u64) -> Self {
        let guard = Self {
            probe,
            min_free,
            origin: Instant::now(),
            checked_us: AtomicU64::new(0),
            free: AtomicU64::new(u64::MAX),
            full: AtomicBool::new(false),
            refreshing: Mutex::new(()),
        };
        guard.refresh();
        guard
    }

    /// The filesystem holding `dir`.
    pub fn for_dir(dir: &Path, min_free: u64) -> Self {
        Self::new(Box::new(Statvfs::new(dir)), min_free)
    }

    pub fn min_free(&self) -> u64 {
        self.min_free
    }

    /// The last reading: (bytes available, whether writes are refused).
    pub fn state(&self) -> (u64, bool) {
        (self.free.load(Ordering::Relaxed), self.full.load(Ordering::Relaxed))
    }

    /// Reads the free space now and updates the state, logging a change either way.
    pub fn refresh(&self) {
        let free = match self.probe.available() {
            Ok(f) => f,
            Err(e) => {
                // Keep the last reading: a failing statvfs says nothing about the space.
                warn!(error = %e, "could not read the data directory's free space");
                return;
            }
        };
        self.free.store(free, Ordering::Relaxed);
        self.checked_us
            .store((self.origin.elapsed().as_micros() as u64).max(1), Ordering::Relaxed);
        let full = free < self.min_free;
        if self.full.swap(full, Ordering::Relaxed) != full {
            if full {
                warn!(
                    free,
                    min_free_bytes = self.min_free,
                    "data directory is almost full: refusing writes until space is freed"
                );
            } else {
                info!(
                    free,
                    min_free_bytes = self.min_free,
                    "free space is back: accepting writes"
                );
            }
        }
    }

    /// `Ok` if a write may go ahead; [`StoreError::DiskFull`] while space is under the limit.
    pub fn check(&self) -> Result<(), StoreError> {
        let age = (self.origin.elapsed().as_micros() as u64).saturating_sub(self.checked_us.load(Ordering::Relaxed));
        if age >= Self::REFRESH.as_micros() as u64 {
            // One writer refreshes; the others use the reading it is about to replace.
            if let Some(_refreshing) = self.refreshing.try_lock() {
                self.refresh();
            }
        }
        match self.state() {
            (free, true) => Err(StoreError::DiskFull {
                free,
                limit: self.min_free,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Fake(Arc<AtomicU64>);

    impl FreeSpace for Fake {
        fn available(&self) -> std::io::Result<u64> {
            Ok(self.0.load(Ordering::Relaxed))
        }
    }

    #[test]
    fn refuses_under_the_limit_and_recovers_by_itself() {
        let free = Arc::new(AtomicU64::new(1000));
        let guard = SpaceGuard::new(Box::new(Fake(free.clone())), 500);
        assert!(guard.check().is_ok());
        free.store(499, Ordering::Relaxed);
        // Not yet read again: the last reading stands for up to REFRESH.
        std::thread::sleep(SpaceGuard::REFRESH + Duration::from_millis(20));
        let err = guard.check().unwrap_err();
        assert!(matches!(err, StoreError::DiskFull { free: 499, limit: 500 }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("storage.min_free_bytes = 500"), "{text}");
        assert!(text.contains("499 bytes free"), "{text}");
        free.store(500, Ordering::Relaxed);
        std::thread::sleep(SpaceGuard::REFRESH + Duration::from_millis(20));
        assert!(guard.check().is_ok(), "writes are let in again once space returns");
    }

    #[test]
    fn reads_the_real_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let free = Statvfs::new(dir.path()).available().unwrap();
        assert!(free > 0);
        assert!(SpaceGuard::for_dir(dir.path(), 0).check().is_ok());
        let err = SpaceGuard::for_dir(dir.path(), u64::MAX).check().unwrap_err();
        assert!(matches!(err, StoreError::DiskFull { .. }), "{err:?}");
        assert!(Statvfs::new(Path::new("/no/such/dir")).available().is_err());
    }
}
