//! `sts-sidecar issuer publish --out DIR`: the discovery document and the keys as static files,
//! for any static host (a bucket, a static route), so that the token endpoint itself need not be
//! reachable by relying parties.
//!
//! The files, under `DIR`, mirror the paths relying parties fetch below `--issuer-url`:
//! `.well-known/openid-configuration` (which names `<issuer-url>/token_keys`), `token_keys` and
//! `.well-known/jwks.json` (the same JWKS). They are the documents the running issuer serves for
//! the same flags; each is written to a temporary file and renamed, so a static server never
//! serves half a file. Serve them as `application/json`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::keys::{Documents, LoadError, load_keys};
use super::settings::Settings;

/// Why the documents could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A key could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The documents the issuer with `settings` publishes (its signing and published keys).
pub fn documents(settings: &Settings) -> Result<Documents, LoadError> {
    let (signer, published) = load_keys(settings)?;
    Ok(Documents::of(settings, signer.public(), &published, &[]))
}

/// Writes `documents` under `dir`; returns the files written.
pub fn write(documents: &Documents, dir: &Path) -> Result<Vec<PathBuf>, PublishError> {
    let files = [
        (".well-known/openid-configuration", &documents.discovery),
        ("token_keys", &documents.jwks),
        (".well-known/jwks.json", &documents.jwks),
    ];
    let mut written = Vec::new();
    for (name, bytes) in files {
        let path = dir.join(name);
        write_atomically(&path, bytes).map_err(|source| PublishError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let mut tmp = tempfile_in(parent)?;
    tmp.1.write_all(bytes)?;
    tmp.1.sync_all()?;
    // Published documents are public: readable by the static server whoever runs it.
    tmp.1
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp.0, path)
}

/// A new file beside `dir`'s others, named so that no static server serves it by accident.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    for attempt in 0..16u32 {
        let name = format!(".publish-{}-{attempt}.tmp", std::process::id());
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("cannot create a temporary file"))
}
