//! Reading the small files that hold tokens, which another process may control, without letting
//! that process stall us or fill our memory.
//!
//! The file is opened non-blocking, so a FIFO or a device put in its place cannot hang the open;
//! only a regular file is read, and at most `max_bytes + 1` bytes of it (one more to tell that it
//! was too long). [`read_within`] runs the read on the blocking pool with a deadline, for
//! filesystems that can stall (NFS, FUSE): the runtime's threads never wait on a disk.

use std::fs::Metadata;
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a token file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The OS refused to open or read it.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// It is a symbolic link and links are not followed here.
    #[error("is a symbolic link (point at the file itself)")]
    Symlink,
    /// A FIFO, socket, device or directory.
    #[error("is not a regular file (it is a {0})")]
    NotRegular(&'static str),
    /// Longer than allowed.
    #[error("is larger than {0} bytes")]
    TooLarge(u64),
    /// The read did not finish in time.
    #[error("could not be read within {} s (a stalled filesystem?)", .0.as_secs_f32())]
    TimedOut(Duration),
}

/// Whether the last component of the path may be a symbolic link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Follow it (a Kubernetes projected token is a link into a directory the kubelet swaps).
    Follow,
    /// Refuse it: the file itself must be checked, not what a link points at today.
    Refuse,
}

/// Reads the regular file at `path`, at most `max_bytes` long; returns its content and what
/// `fstat` said of the file opened (so checks apply to the very file read).
pub fn read_regular(
    path: &Path,
    max_bytes: u64,
    links: Links,
) -> Result<(Vec<u8>, Metadata), ReadError> {
    let mut flags = nix::libc::O_NONBLOCK;
    if links == Links::Refuse {
        flags |= nix::libc::O_NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| {
            if links == Links::Refuse && e.raw_os_error() == Some(nix::libc::ELOOP) {
                ReadError::Symlink
            } else {
                ReadError::Io(e)
            }
        })?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(ReadError::NotRegular(kind(&meta)));
    }
    let mut bytes = Vec::new();
    file.take(max_bytes + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(ReadError::TooLarge(max_bytes));
    }
    Ok((bytes, meta))
}

/// [`read_regular`] on the blocking pool, giving up after `within`. A read that stalls keeps
/// its blocking thread until the filesystem answers; callers that retry should not start a
/// second read while one is still out (see `server::auth`).
pub async fn read_within(
    path: PathBuf,
    max_bytes: u64,
    links: Links,
    within: Duration,
) -> Result<(Vec<u8>, Metadata), ReadError> {
    blocking_within(within, move || read_regular(&path, max_bytes, links)).await
}

/// `stat` (links followed) on the blocking pool, giving up after `within`.
pub async fn metadata_within(path: PathBuf, within: Duration) -> Result<Metadata, ReadError> {
    blocking_within(within, move || {
        std::fs::metadata(path).map_err(ReadError::Io)
    })
    .await
}

/// Runs file I/O `work` on the blocking pool, giving up after `within` (the work itself goes on
/// until the filesystem answers: whoever retries should not start a second one meanwhile).
pub async fn blocking_within<T: Send + 'static>(
    within: Duration,
    work: impl FnOnce() -> Result<T, ReadError> + Send + 'static,
) -> Result<T, ReadError> {
    match tokio::time::timeout(within, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(ReadError::Io(std::io::Error::other(join))),
        Err(_) => Err(ReadError::TimedOut(within)),
    }
}

/// Whether a file another user could have written: writable by group or others, or owned by
/// someone other than this process's user or root. `Err` says which, in words, with what
/// another writer `could` then do (e.g. "read credentials", "plant a key").
pub fn only_ours(meta: &Metadata, could: &str) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "can be written by other users (mode {mode:04o}), who could then {could}: chmod go-w it"
        ));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "is owned by uid {}, not by this process's user (uid {me}) or root",
            meta.uid()
        ));
    }
    Ok(())
}

/// Replaces the file at `path` whole with `bytes` and exactly `mode`: written to a new file
/// beside it (created with 0600 first, so nobody else can open it meanwhile), synced, then
/// renamed over `path`, so a reader sees the old content or the new, never part of it.
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true).mode(0o600);
        let mut file = options.open(&tmp)?;
        // The umask may have taken bits from the mode asked for at open; set it exactly.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What a file that is not a regular file is, in words.
pub fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_regular_files_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, b"token").unwrap();
        let (bytes, meta) = read_regular(&path, 5, Links::Refuse).unwrap();
        assert_eq!(bytes, b"token");
        assert_eq!(meta.len(), 5);
        assert!(matches!(
            read_regular(&path, 4, Links::Refuse),
            Err(ReadError::TooLarge(4))
        ));
    }

    #[test]
    fn refuses_fifos_devices_directories_and_links_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // Nobody writes to the FIFO: a blocking open would never return.
        assert!(matches!(
            read_regular(&fifo, 64, Links::Follow),
            Err(ReadError::NotRegular("FIFO"))
        ));
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), 64, Links::Follow),
            Err(ReadError::NotRegular("character device"))
        ));
        assert!(matches!(
            read_regular(dir.path(), 64, Links::Follow),
            Err(ReadError::NotRegular("directory"))
        ));
        let target = dir.path().join("target");
        std::fs::write(&target, b"x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            read_regular(&link, 64, Links::Refuse),
            Err(ReadError::Symlink)
        ));
        assert_eq!(read_regular(&link, 64, Links::Follow).unwrap().0, b"x");
    }
}
