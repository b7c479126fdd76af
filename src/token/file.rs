//! `type = "file"`: a token file another process keeps fresh, such as a Kubernetes projected
//! service-account token (`AWS_WEB_IDENTITY_TOKEN_FILE` under IRSA).
//!
//! The kubelet never rewrites the file in place: the data lives in a timestamped directory,
//! `..data` is a symlink it swaps to a new directory, and the token path is a symlink into
//! `..data`. A watcher on the path itself misses that swap, and an mtime alone can repeat, so
//! the probe compares what the path resolves to (device, inode, size and mtime of the final
//! file). The token's own `exp` bounds its reuse as for every source. A missing, empty or
//! unreadable file is an identity error naming the path: the refresher retries and recovers
//! when the file appears.

use std::path::PathBuf;

use super::{Context, Error, IdentityToken, Kind, Probe, Stamp};
use crate::checker::{Checker, Field, Layer, layer};
use crate::files::{self, Links, ReadError};

/// The largest token file read; a projected token is about 1 KiB.
const MAX_FILE: u64 = 64 * 1024;
/// How long reading the file may take (a local file takes microseconds).
const READ_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// `type = "file"` in the config file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct Spec {
    path: Field<PathBuf>,
}

/// The flags of a file source.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(skip)]
pub struct Flags {
    /// Read the identity token from FILE, re-read when it changes (Kubernetes projected token;
    /// with no other source, $AWS_WEB_IDENTITY_TOKEN_FILE is used) [source: file]
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// A checked file source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The token file.
    pub path: PathBuf,
    /// The setting that named it (`--token-file`, `AWS_WEB_IDENTITY_TOKEN_FILE`, a key).
    pub origin: String,
}

impl Kind for TokenFile {
    const NAME: &'static str = "file";
    const METRIC_LABEL: &'static str = "token_file";
    const PICKED_BY: &'static [&'static str] = &["token_file"];
    type Spec = Spec;
    type Flags = Flags;
    type Settings = Settings;

    fn layer(spec: &mut Spec, flags: &Flags, _audience: &Option<String>, l: &mut Layer<'_, '_>) {
        layer!(l, spec.path <- flags.token_file);
    }

    fn check(c: &mut Checker<'_>, at: &str, spec: Spec, _: &mut dyn Context) -> Option<Settings> {
        let key = format!("{at}.path");
        match c.path(&key, &spec.path) {
            Some(path) => Some(Settings {
                path,
                origin: c.origin(&key),
            }),
            None if !spec.path.is_present() => {
                c.problem(&key, "not set: pass --token-file PATH");
                None
            }
            None => None,
        }
    }

    fn for_audience(_: &Settings, _: &str) -> Result<Settings, String> {
        Err(
            "a token file holds one token, for the audience its writer asked for (a \
             projected token's volume names it); project another token for another audience"
                .to_owned(),
        )
    }

    fn describe(s: &Settings) -> String {
        format!("{} (from {})", s.path.display(), s.origin)
    }

    fn new(settings: &Settings) -> Result<Self, super::SetupError> {
        Ok(Self {
            settings: settings.clone(),
        })
    }

    fn origin(&self) -> String {
        format!(
            "the token file {} (from {})",
            self.settings.path.display(),
            self.settings.origin
        )
    }

    fn stale_hint(&self) -> String {
        format!(
            "the file holds a token that has expired: whatever writes it (the kubelet for a \
             projected token, a job or sidecar that renews it) has stopped renewing it; check \
             that writer, or point {} at the file it renews",
            self.settings.origin
        )
    }

    async fn probe(&self) -> Result<Probe, Error> {
        self.probe_file().await
    }

    async fn fetch(&self, _probe: &Probe) -> Result<IdentityToken, Error> {
        self.read().await
    }
}

/// Reads the token from a file.
#[derive(Debug)]
pub struct TokenFile {
    settings: Settings,
}

/// What a file is, as far as a change of token is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl TokenFile {
    /// What the path resolves to now (symlinks followed).
    async fn probe_file(&self) -> Result<Probe, Error> {
        let meta = files::metadata_within(self.settings.path.clone(), READ_WITHIN)
            .await
            .map_err(|e| self.read_error(e))?;
        Ok(Probe {
            stamp: Stamp::File(file_id(&meta)),
            identity: None,
        })
    }

    /// Reads the token: the file's content with surrounding whitespace trimmed. Only a regular
    /// file is read (a FIFO put in its place cannot hang the refresh), within [`READ_WITHIN`].
    async fn read(&self) -> Result<IdentityToken, Error> {
        let (bytes, _) = files::read_within(
            self.settings.path.clone(),
            MAX_FILE,
            Links::Follow,
            READ_WITHIN,
        )
        .await
        .map_err(|e| self.read_error(e))?;
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return Err(self.unavailable("is not text".to_owned()));
        };
        let token = text.trim();
        if token.is_empty() {
            return Err(self.unavailable("is empty".to_owned()));
        }
        Ok(IdentityToken::new(token))
    }

    fn read_error(&self, e: ReadError) -> Error {
        let detail = match e {
            ReadError::Io(e) => match e.kind() {
                std::io::ErrorKind::NotFound => "does not exist (yet)".to_owned(),
                std::io::ErrorKind::PermissionDenied => {
                    "is not readable (permission denied)".to_owned()
                }
                _ => format!("cannot be read: {e}"),
            },
            other => other.to_string(),
        };
        self.unavailable(detail)
    }

    fn unavailable(&self, detail: String) -> Error {
        Error::Unavailable {
            origin: self.origin(),
            detail,
            hint: format!(
                "make {} name a readable file holding the identity token (on Kubernetes: a \
                 projected serviceAccountToken volume with audience sts.amazonaws.com)",
                self.settings.origin
            ),
        }
    }
}

#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt as _;
    FileId {
        dev: meta.dev(),
        ino: meta.ino(),
        len: meta.len(),
        modified: meta.modified().ok(),
    }
}

#[cfg(not(unix))]
fn file_id(meta: &std::fs::Metadata) -> FileId {
    FileId {
        dev: 0,
        ino: 0,
        len: meta.len(),
        modified: meta.modified().ok(),
    }
}
