//! Advisory file locks (flock) so concurrent dvol processes cannot corrupt a volume or the
//! store: an exclusive lock per volume for commands that change it, and a store lock that
//! every object reader/writer holds shared and gc holds exclusive; a remote directory's ref lock.
//! Locks die with the process. Must not read the environment: callers pass the wait limit.

use crate::error::IoContext;
use crate::{Error, Result};
use std::fs::{File, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

/// A held lock; released on drop (or when the process dies).
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

/// How long a command waits for a busy lock unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Take the lock at `path`, waiting up to `limit`; `name` appears in the error.
pub fn acquire(path: &Path, name: &str, exclusive: bool, limit: Duration) -> Result<LockGuard> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = File::options()
        .mode(0o600)
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .at("open lock file", path)?;
    let start = Instant::now();
    loop {
        let attempt = if exclusive {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match attempt {
            Ok(()) => return Ok(LockGuard { _file: file }),
            Err(TryLockError::WouldBlock) if start.elapsed() < limit => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    volume: name.to_string(),
                    waited_secs: start.elapsed().as_secs(),
                })
            }
            Err(TryLockError::Error(e)) => return Err(e).at("lock", path),
        }
    }
}
