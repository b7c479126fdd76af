//! Keeping credentials out of memory dumps and away from same-user debuggers.
//!
//! The process holds secrets in memory: session credentials, identity tokens, the authorization
//! token, signing keys. A core dump writes them to disk, and another process of the same user
//! can read them live through `/proc/PID/mem` or `ptrace`. At start every subcommand marks the
//! process non-dumpable (`PR_SET_DUMPABLE` 0: no core file, and only root may attach or read
//! its memory) and sets its core-size limit to 0, soft and hard, so that not even a process of
//! the same user can raise it again (`prlimit`). `--allow-core-dumps` leaves both as they were,
//! for debugging.
//!
//! `exec` keeps the core-size limit of the program it starts: a limit is inherited across
//! `execve`, and the app's own dumps are its business. Non-dumpable is not inherited there (the
//! kernel resets it at `execve`), so `exec` marks itself only.
//!
//! Per-buffer exclusion (`MADV_DONTDUMP`) would need `unsafe` code, which this crate forbids;
//! the whole process is excluded instead.
//!
//! While here, the open-files limit is raised to its hard limit: each connection takes a
//! descriptor, and a soft limit of 1,024 (systemd's default) leaves little room for two
//! listeners' connection slots (`--max-connections` each) and the process's own files.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// `STS_SIDECAR_ALLOW_CORE_DUMPS`: the variable of `--allow-core-dumps`.
pub const ENV_ALLOW_CORE_DUMPS: &str = "STS_SIDECAR_ALLOW_CORE_DUMPS";

/// What [`apply`] should do to the core-size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreLimit {
    /// Set it to 0.
    Zero,
    /// Leave it (for `exec`: the child inherits it).
    Inherit,
}

/// Hardens the process (see the module's documentation) unless `allow_dumps`. Failures are
/// logged, not fatal: the platform may not allow a change (a seccomp profile), and the
/// sidecar is still more use running than not.
pub fn apply(allow_dumps: bool, core: CoreLimit) {
    raise_open_files();
    if allow_dumps {
        tracing::info!(
            "--allow-core-dumps: this process can be dumped and read by debuggers of its user; \
             dumps will hold credentials"
        );
        return;
    }
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "cannot mark the process non-dumpable");
    }
    if core == CoreLimit::Zero
        && let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, 0)
    {
        tracing::warn!(error = %e, "cannot set the core file size limit to 0");
    }
    let dumpable = nix::sys::prctl::get_dumpable().ok();
    let core_limit = getrlimit(Resource::RLIMIT_CORE).ok().map(|(soft, _)| soft);
    tracing::debug!(
        ?dumpable,
        ?core_limit,
        "process hardened: not dumpable, no core files (--allow-core-dumps to debug)"
    );
}

fn raise_open_files() {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::debug!(error = %e, soft, hard, "cannot raise the open files limit");
    }
}
