//! The authorization token every credentials request must carry in `Authorization` (the raw
//! value, no `Bearer`), compared in constant time.
//!
//! The token comes from `AWS_CONTAINER_AUTHORIZATION_TOKEN` (a CF sidecar shares the app's
//! environment), from a file, or is generated. A file that does not exist yet is created with a
//! fresh random token (0600, written to a temporary name and renamed). When the file changes,
//! the new token is picked up on the first request that presents it, and the old one keeps
//! working for a grace period so that clients mid-rotation are not refused.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine as _;
use parking_lot::Mutex;
use tokio::time::Instant;

crate::secret::secret_string!(
    /// The shared secret between the app's SDK and this server.
    AuthToken
);

/// How long a replaced token from the file keeps working.
const ROTATION_GRACE: Duration = Duration::from_secs(60);
/// How often at most a wrong token makes us look at the file again.
const RELOAD_INTERVAL: Duration = Duration::from_millis(500);

/// Checks presented tokens.
#[derive(Debug)]
pub struct Auth {
    /// The accepted tokens, read on every request without a shared lock.
    tokens: ArcSwap<Tokens>,
    /// What was last seen of the file; only taken when a presented token does not match.
    file_state: Mutex<FileState>,
    file: Option<PathBuf>,
}

#[derive(Debug)]
struct Tokens {
    current: AuthToken,
    previous: Option<(AuthToken, Instant)>,
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
                current: token,
                previous: None,
            }),
            file_state: Mutex::new(FileState::default()),
            file: None,
        })
    }

    /// Reads the token from `path`, creating the file with a new random token if it is missing.
    /// Returns whether the file was created.
    pub fn from_file(path: &Path) -> Result<(Self, bool), Error> {
        let created = match std::fs::metadata(path) {
            Ok(_) => false,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_token_file(path, &generate())?;
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
        Ok((
            Self {
                tokens: ArcSwap::from_pointee(Tokens {
                    current: token,
                    previous: None,
                }),
                file_state: Mutex::new(FileState {
                    stamp: Some(stamp),
                    last_reload: None,
                }),
                file: Some(path.to_owned()),
            },
            created,
        ))
    }

    /// Whether `presented` (the raw `Authorization` value) is the token.
    pub fn check(&self, presented: &[u8]) -> bool {
        if self.matches(presented) {
            return true;
        }
        if self.file.is_some() && self.reload_if_changed() {
            return self.matches(presented);
        }
        false
    }

    fn matches(&self, presented: &[u8]) -> bool {
        let tokens = self.tokens.load();
        if equal(presented, tokens.current.expose().as_bytes()) {
            return true;
        }
        match &tokens.previous {
            Some((old, until)) => {
                Instant::now() < *until && equal(presented, old.expose().as_bytes())
            }
            None => false,
        }
    }

    /// Looks at the file (at most every [`RELOAD_INTERVAL`]); true if the token changed.
    fn reload_if_changed(&self) -> bool {
        let Some(path) = &self.file else { return false };
        let mut file_state = self.file_state.lock();
        if file_state
            .last_reload
            .is_some_and(|t| t.elapsed() < RELOAD_INTERVAL)
        {
            return false;
        }
        file_state.last_reload = Some(Instant::now());
        let Ok(stamp) = stamp(path) else { return false };
        if file_state.stamp.as_ref() == Some(&stamp) {
            return false;
        }
        match read_token_file(path) {
            Ok((token, stamp)) => {
                file_state.stamp = Some(stamp);
                let old = self.tokens.load();
                if token == old.current {
                    return false;
                }
                self.tokens.store(std::sync::Arc::new(Tokens {
                    current: token,
                    previous: Some((old.current.clone(), Instant::now() + ROTATION_GRACE)),
                }));
                tracing::info!(path = %path.display(), "authorization token file changed, new token in use");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "keeping the previous authorization token");
                false
            }
        }
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

/// Writes `token` to `path` atomically with mode 0600 and no trailing newline.
pub fn write_token_file(path: &Path, token: &AuthToken) -> Result<(), Error> {
    let io = |source| Error::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
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
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(token.expose().as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

fn read_token_file(path: &Path) -> Result<(AuthToken, FileStamp), Error> {
    let io = |source| Error::Io {
        action: "read",
        path: path.to_owned(),
        source,
    };
    let stamp = stamp(path).map_err(io)?;
    let bytes = std::fs::read(path).map_err(io)?;
    let origin = path.display().to_string();
    let text = String::from_utf8(bytes).map_err(|_| Error::Invalid {
        origin: origin.clone(),
        problem: "is not UTF-8 text",
    })?;
    validate(&text, &origin)?;
    Ok((AuthToken::new(text), stamp))
}

fn stamp(path: &Path) -> std::io::Result<FileStamp> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
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
    if token.len() > 4096 {
        return invalid("is longer than 4096 characters");
    }
    Ok(())
}

fn equal(a: &[u8], b: &[u8]) -> bool {
    // Constant time in the content; the length is not secret (every generated token has 43).
    constant_time_eq::constant_time_eq(a, b)
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

    #[test]
    fn compares_exactly() {
        let auth = Auth::fixed(AuthToken::new("0123456789abcdef"), "env").unwrap();
        assert!(auth.check(b"0123456789abcdef"));
        assert!(!auth.check(b"0123456789abcde"));
        assert!(!auth.check(b"0123456789abcdeF"));
        assert!(!auth.check(b"Bearer 0123456789abcdef"));
        assert!(!auth.check(b""));
    }
}
