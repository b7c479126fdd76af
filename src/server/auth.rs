//! The authorization token every credentials request must carry in `Authorization` (the raw
//! value, no `Bearer`), compared in constant time.
//!
//! The token comes from `AWS_CONTAINER_AUTHORIZATION_TOKEN` (a CF sidecar shares the app's
//! environment), from a file, or is generated. A file that does not exist yet is created with a
//! fresh random token (0600, written to a temporary name and renamed). When the file changes,
//! the new token is picked up on the first request that presents it, and the old one keeps
//! working for a grace period so that clients mid-rotation are not refused.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine as _;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::files::{self, Links, ReadError};

crate::secret::secret_string!(
    /// The shared secret between the app's SDK and this server.
    AuthToken
);

/// How long a replaced token from the file keeps working.
const ROTATION_GRACE: Duration = Duration::from_secs(60);
/// How often at most a wrong token makes us look at the file again.
const RELOAD_INTERVAL: Duration = Duration::from_millis(500);
/// How long a reload may take before the request that asked for it gives up on it.
const READ_WITHIN: Duration = Duration::from_secs(1);
/// The longest token accepted (SDKs send it in one header).
const MAX_TOKEN: usize = 4096;
/// Tokens shorter than this are accepted with a warning: a local process can guess them.
pub const SHORT_TOKEN: usize = 16;
/// How often at most refused requests are reported in a warning.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// A SHA-256 digest. Tokens are compared by digest, so that the comparison takes the same time
/// whatever the length of the token presented or of the real one.
type Digest = [u8; 32];

fn digest(bytes: &[u8]) -> Digest {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Checks presented tokens.
#[derive(Debug)]
pub struct Auth {
    /// The accepted tokens, read on every request without a shared lock.
    tokens: ArcSwap<Tokens>,
    file: Option<TokenFile>,
}

#[derive(Debug)]
struct Tokens {
    current: Digest,
    previous: Option<(Digest, Instant)>,
}

/// The token file and what was last seen of it.
#[derive(Debug)]
struct TokenFile {
    path: PathBuf,
    /// Only ever held for a moment, never across I/O.
    state: Mutex<FileState>,
    /// A read is out (at most one at a time: one stalled on a filesystem must not be joined by
    /// a thread per wrong token).
    reading: Arc<AtomicBool>,
}

#[derive(Debug, Default)]
struct FileState {
    stamp: Option<FileStamp>,
    last_reload: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: meta.ino(),
        }
    }
}

/// Why the authorization token is unusable.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read or written.
    #[error("cannot {action} the authorization token file {path}")]
    Io {
        /// "read" or "write".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not one only this user controls.
    #[error("refusing the authorization token file {path}: it {problem}")]
    Unsafe {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The token has a shape SDKs refuse.
    #[error("the authorization token from {origin} {problem}")]
    Invalid {
        /// Where it came from.
        origin: String,
        /// What is wrong (never the token).
        problem: &'static str,
    },
}

impl Auth {
    /// Accepts exactly `token`.
    pub fn fixed(token: AuthToken, origin: &str) -> Result<Self, Error> {
        validate(token.expose(), origin)?;
        Ok(Self {
            tokens: ArcSwap::from_pointee(Tokens {
                current: digest(token.expose().as_bytes()),
                previous: None,
            }),
            file: None,
        })
    }

    /// Reads the token from `path`, creating the file with a new random token (and `mode`) if
    /// it is missing. Returns whether the file was created. The file must be a regular file
    /// (not a link to one), owned by this process's user or root, and not writable by group or
    /// others.
    pub fn from_file(path: &Path, mode: u32) -> Result<(Self, bool), Error> {
        let created = match std::fs::symlink_metadata(path) {
            Ok(_) => false,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_token_file(path, &generate(), mode)?;
                true
            }
            Err(source) => {
                return Err(Error::Io {
                    action: "read",
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let (token, stamp) = read_token_file(path)?;
        if token.expose().chars().count() < SHORT_TOKEN {
            tracing::warn!(
                path = %path.display(),
                "the authorization token file holds fewer than {SHORT_TOKEN} characters: another \
                 process on this machine can guess it; delete the file and a random token is written"
            );
        }
        Ok((
            Self {
                tokens: ArcSwap::from_pointee(Tokens {
                    current: digest(token.expose().as_bytes()),
                    previous: None,
                }),
                file: Some(TokenFile {
                    path: path.to_owned(),
                    state: Mutex::new(FileState {
                        stamp: Some(stamp),
                        last_reload: None,
                    }),
                    reading: Arc::new(AtomicBool::new(false)),
                }),
            },
            created,
        ))
    }

    /// Whether `presented` (the raw `Authorization` value) is the token. A token that does not
    /// match makes us look at the file, if there is one and it changed (at most every 500 ms,
    /// one read at a time, waiting for it at most a second).
    pub async fn check(&self, presented: &[u8]) -> bool {
        let presented = digest(presented);
        if self.matches(&presented) {
            return true;
        }
        self.file.is_some() && self.reload_if_changed().await && self.matches(&presented)
    }

    fn matches(&self, presented: &Digest) -> bool {
        let tokens = self.tokens.load();
        if equal(presented, &tokens.current) {
            return true;
        }
        match &tokens.previous {
            Some((old, until)) => Instant::now() < *until && equal(presented, old),
            None => false,
        }
    }

    /// Looks at the file; true if the token changed.
    async fn reload_if_changed(&self) -> bool {
        let Some(file) = &self.file else { return false };
        let known = {
            let mut state = file.state.lock();
            if state
                .last_reload
                .is_some_and(|t| t.elapsed() < RELOAD_INTERVAL)
            {
                return false;
            }
            state.last_reload = Some(Instant::now());
            state.stamp.clone()
        };
        if file.reading.swap(true, Ordering::AcqRel) {
            return false;
        }
        let reading = Done(file.reading.clone());
        let path = file.path.clone();
        let read = files::blocking_within(READ_WITHIN, move || {
            let _reading = reading;
            Ok(match std::fs::symlink_metadata(&path) {
                Ok(meta) if Some(FileStamp::of(&meta)) == known => None,
                _ => Some(read_token_file(&path)),
            })
        });
        let outcome = match read.await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(path = %file.path.display(), error = %e, "keeping the previous authorization token");
                return false;
            }
        };
        match outcome {
            None => false,
            Some(Ok((token, stamp))) => {
                file.state.lock().stamp = Some(stamp);
                let new = digest(token.expose().as_bytes());
                let old = self.tokens.load();
                if equal(&new, &old.current) {
                    return false;
                }
                self.tokens.store(Arc::new(Tokens {
                    current: new,
                    previous: Some((old.current, Instant::now() + ROTATION_GRACE)),
                }));
                tracing::info!(path = %file.path.display(), "authorization token file changed, new token in use");
                true
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "keeping the previous authorization token");
                false
            }
        }
    }
}

/// Clears the "a read is out" flag when the read ends, however it ends.
struct Done(Arc<AtomicBool>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Counts refused authorization attempts and reports them in a warning at most once a minute
/// (a brute force must not flood the log; nobody must miss that one is going on).
#[derive(Debug, Default)]
pub struct Refusals {
    unreported: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

impl Refusals {
    /// Notes one refused request.
    pub fn note(&self) {
        self.unreported.fetch_add(1, Ordering::Relaxed);
        // Under a flood the lock is contended: whoever does not get it leaves the report to
        // whoever has it.
        let Some(mut last) = self.last_warning.try_lock() else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        let refused = self.unreported.swap(0, Ordering::Relaxed);
        tracing::warn!(
            refused,
            "refused credentials requests with a missing or wrong authorization token (counted \
             in sts_sidecar_auth_failures_total); if this is not a client being set up, another \
             process on this machine may be guessing the token"
        );
    }
}

/// A fresh random token: 32 bytes from the system CSPRNG, base64url (43 printable characters).
pub fn generate() -> AuthToken {
    let mut bytes = [0u8; 32];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // aws-lc's RNG does not fail in practice; fall back to rand's CSPRNG rather than panic.
        bytes = rand::random();
    }
    AuthToken::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Writes `token` to `path` atomically with `mode` (0600 or 0640: see
/// `config::flags::TOKEN_FILE_MODES`, whatever the umask) and no trailing newline. The file's
/// group is the directory's when that has the set-group-ID bit (as a Kubernetes volume with an
/// fsGroup has), else this process's.
pub fn write_token_file(path: &Path, token: &AuthToken, mode: u32) -> Result<(), Error> {
    let io = |source| Error::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    crate::files::replace(path, token.expose().as_bytes(), mode & 0o640).map_err(io)
}

/// Reads and checks the token file: a regular file, not reached through a symbolic link, owned
/// by this process's user (or root), writable by nobody else; at most [`MAX_TOKEN`] bytes.
fn read_token_file(path: &Path) -> Result<(AuthToken, FileStamp), Error> {
    let origin = path.display().to_string();
    let unsafe_file = |problem: String| Error::Unsafe {
        path: path.to_owned(),
        problem,
    };
    let (bytes, meta) = match files::read_regular(path, MAX_TOKEN as u64, Links::Refuse) {
        Ok(read) => read,
        Err(ReadError::Io(source)) => {
            return Err(Error::Io {
                action: "read",
                path: path.to_owned(),
                source,
            });
        }
        Err(ReadError::TooLarge(_)) => {
            return Err(Error::Invalid {
                origin,
                problem: "is longer than 4096 characters",
            });
        }
        Err(other) => return Err(unsafe_file(other.to_string())),
    };
    files::only_ours(&meta, "read credentials").map_err(unsafe_file)?;
    let text = String::from_utf8(bytes).map_err(|_| Error::Invalid {
        origin: origin.clone(),
        problem: "is not UTF-8 text",
    })?;
    validate(&text, &origin)?;
    Ok((AuthToken::new(text), FileStamp::of(&meta)))
}

/// Refuses tokens every SDK would refuse or mangle (docs/sdk-clients.md §2).
fn validate(token: &str, origin: &str) -> Result<(), Error> {
    let invalid = |problem| {
        Err(Error::Invalid {
            origin: origin.to_owned(),
            problem,
        })
    };
    if token.is_empty() {
        return invalid("is empty");
    }
    if token.ends_with('\n') || token.ends_with('\r') {
        return invalid(
            "ends with a newline, which every AWS SDK refuses (write it with printf '%s')",
        );
    }
    if token.bytes().any(|b| b == b'\n' || b == b'\r') {
        return invalid("contains a line break, which every AWS SDK refuses");
    }
    if token.starts_with(' ') || token.ends_with(' ') {
        return invalid("starts or ends with a space, which HTTP clients strip");
    }
    if !token.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return invalid("contains characters other than printable ASCII");
    }
    if token.len() > MAX_TOKEN {
        return invalid("is longer than 4096 characters");
    }
    Ok(())
}

fn equal(a: &Digest, b: &Digest) -> bool {
    constant_time_eq::constant_time_eq_32(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_long_printable_and_distinct() {
        let a = generate();
        let b = generate();
        assert_eq!(a.expose().len(), 43);
        assert_ne!(a, b);
        assert!(validate(a.expose(), "x").is_ok());
    }

    #[test]
    fn refuses_tokens_sdks_refuse() {
        for bad in ["", "abc\n", "ab\ncd", "abc\r", " abc", "abc ", "ab\u{7f}"] {
            assert!(validate(bad, "x").is_err(), "{bad:?}");
        }
        let e = validate("secret-marker\n", "file f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("newline") && !e.contains("secret-marker"), "{e}");
    }

    fn token_file(dir: &tempfile::TempDir, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.path().join("token");
        std::fs::write(&path, "0123456789abcdefXYZ").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn refused(path: &Path) -> String {
        match Auth::from_file(path, 0o600) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn refuses_a_token_file_others_can_write() {
        // See: issue #20 item 2.
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o620, 0o602, 0o666, 0o777] {
            let path = token_file(&dir, mode);
            let e = refused(&path);
            assert!(
                e.contains(&path.display().to_string())
                    && e.contains("can be written by other users")
                    && e.contains(&format!("{mode:04o}")),
                "{e}"
            );
            assert!(!e.contains("0123456789abcdef"), "{e}");
        }
        for mode in [0o600, 0o640, 0o644, 0o400] {
            assert!(
                Auth::from_file(&token_file(&dir, mode), 0o600).is_ok(),
                "{mode:o}"
            );
        }
    }

    #[test]
    fn refuses_links_fifos_devices_and_huge_files() {
        // See: issue #20 items 2 and 3.
        let dir = tempfile::tempdir().unwrap();
        let real = token_file(&dir, 0o600);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(refused(&link).contains("is a symbolic link"));
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(refused(&fifo).contains("not a regular file (it is a FIFO)"));
        assert!(refused(Path::new("/dev/zero")).contains("character device"));
        let huge = dir.path().join("huge");
        std::fs::write(&huge, "a".repeat(1 << 20)).unwrap();
        assert!(refused(&huge).contains("longer than 4096"));
    }

    #[test]
    fn owners_other_than_this_user_and_root_are_refused() {
        // Creating a file owned by another user needs root; the rule itself does not.
        let dir = tempfile::tempdir().unwrap();
        let path = token_file(&dir, 0o600);
        let me = nix::unistd::geteuid();
        if me.is_root() {
            nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(4321)), None).unwrap();
            let e = refused(&path);
            assert!(e.contains("is owned by uid 4321"), "{e}");
        } else {
            // Not root: no other owner can be made here; the process's own file is accepted.
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!(meta.uid(), me.as_raw());
            assert!(Auth::from_file(&path, 0o600).is_ok());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reload_refuses_a_rewritten_unsafe_file_and_never_blocks_on_a_fifo() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = token_file(&dir, 0o600);
        let (auth, _) = Auth::from_file(&path, 0o600).unwrap();
        assert!(auth.check(b"0123456789abcdefXYZ").await);
        // Another user rewrites a world-writable file with their own token.
        std::fs::write(&path, "attacker-token-0123456789").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(!auth.check(b"attacker-token-0123456789").await);
        assert!(
            auth.check(b"0123456789abcdefXYZ").await,
            "the old token stays"
        );
        // Swapped for a FIFO nobody writes to: the check answers at once.
        std::fs::remove_file(&path).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        tokio::time::sleep(RELOAD_INTERVAL).await;
        let started = tokio::time::Instant::now();
        let answered = tokio::time::timeout(Duration::from_secs(5), auth.check(b"other")).await;
        assert_eq!(answered, Ok(false));
        assert!(started.elapsed() < READ_WITHIN, "{:?}", started.elapsed());
        assert!(auth.check(b"0123456789abcdefXYZ").await);
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_are_reported_in_one_warning_a_minute() {
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let refusals = Refusals::default();
        for _ in 0..1000 {
            refusals.note();
        }
        tokio::time::sleep(WARN_EVERY).await;
        for _ in 0..7 {
            refusals.note();
        }
        let text = String::from_utf8(lines.0.lock().clone()).unwrap();
        let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
        assert_eq!(warnings.len(), 2, "{text}");
        assert!(warnings[0].contains("refused=1"), "{text}");
        // The second counts everything since the first; the six after it wait for the next.
        assert!(warnings[1].contains("refused=1000"), "{text}");
    }

    #[tokio::test]
    async fn compares_exactly() {
        let auth = Auth::fixed(AuthToken::new("0123456789abcdef"), "env").unwrap();
        assert!(auth.check(b"0123456789abcdef").await);
        assert!(!auth.check(b"0123456789abcde").await);
        assert!(!auth.check(b"0123456789abcdeF").await);
        assert!(!auth.check(b"Bearer 0123456789abcdef").await);
        assert!(!auth.check(b"").await);
    }
}
