//! `type = "command"`: a program that prints an identity token, for identities no other source
//! knows.
//!
//! The program runs without a shell (argv from the config), with stdin closed, and must print
//! the token on stdout and exit 0 within the timeout; stdout is read up to 64 KiB. A non-zero
//! exit is an identity error with the exit status and how many bytes stderr had: not stderr's
//! text, which would reach the unauthenticated `/status` and the logs, and a program may print
//! a secret there (`client_secret=...` in a usage message). Its text is logged at debug level
//! only. A program that hangs or floods its output is killed with everything it started: it
//! runs in a process group of its own, and the whole group is ended. Only the program's name
//! appears in messages and logs: its arguments and its output may hold secrets.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncReadExt as _;

use super::{Context, Error, IdentityToken, Kind, Probe};
use crate::checker::{Checker, Expected, Field, Layer, layer};

/// The most stdout read; a token is a few KiB.
const MAX_OUTPUT: u64 = 64 * 1024;
/// The default time a run may take.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;
/// How much of stderr is read (and logged at debug level).
const MAX_STDERR: u64 = 4096;

/// The program and its arguments: a TOML array, or (from `--token-command`) one string split
/// on whitespace.
#[derive(Clone, PartialEq, Eq)]
pub struct Argv(pub Vec<String>);

impl std::fmt::Debug for Argv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Argv(<redacted>)")
    }
}

impl std::str::FromStr for Argv {
    type Err = std::convert::Infallible;

    fn from_str(line: &str) -> Result<Self, Self::Err> {
        Ok(Argv(line.split_whitespace().map(str::to_owned).collect()))
    }
}

impl Expected for Argv {
    const EXPECTED: &'static str = "an array of strings (the program and its arguments)";
}

impl<'de> Deserialize<'de> for Argv {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            List(Vec<String>),
            Line(String),
        }
        Raw::deserialize(d).map(|raw| match raw {
            Raw::List(v) => Argv(v),
            Raw::Line(s) => Argv(s.split_whitespace().map(str::to_owned).collect()),
        })
    }
}

/// `type = "command"` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Spec {
    command: Field<Argv>,
    timeout_secs: Field<u64>,
}

/// The flags of a command source.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(skip)]
pub struct Flags {
    /// Program that prints the identity token, split on spaces and run without a shell (use
    /// the config file for arguments with spaces) [source: command]
    #[arg(long, value_name = "COMMAND")]
    pub token_command: Option<Argv>,
    /// Time one run of the token command may take, 1-300 seconds [default: 10]
    #[arg(long, value_name = "SECS", hide_short_help = true)]
    pub token_command_timeout_secs: Option<u64>,
}

/// A checked command source. Its `Debug` shows the program and the number of arguments only:
/// arguments may hold secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// How long one run may take.
    pub timeout: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("program", &self.argv.first())
            .field("arguments", &self.argv.len().saturating_sub(1))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Kind for CommandSource {
    const NAME: &'static str = "command";
    const METRIC_LABEL: &'static str = "command";
    const PICKED_BY: &'static [&'static str] = &["token_command"];
    type Spec = Spec;
    type Flags = Flags;
    type Settings = Settings;

    fn layer(spec: &mut Spec, flags: &Flags, _audience: &Option<String>, l: &mut Layer<'_, '_>) {
        layer!(l, spec.command <- flags.token_command);
        layer!(l, spec.timeout_secs <- flags.token_command_timeout_secs);
    }

    fn check(c: &mut Checker<'_>, at: &str, spec: Spec, _: &mut dyn Context) -> Option<Settings> {
        let timeout = c.timeout(at, &spec.timeout_secs, DEFAULT_TIMEOUT_SECS, 300);
        let key = format!("{at}.command");
        match c.value(&key, &spec.command) {
            Some(Argv(argv)) if argv.first().is_some_and(|p| !p.trim().is_empty()) => {
                Some(Settings { argv, timeout })
            }
            Some(_) => {
                c.problem(
                    &key,
                    "must name a program: command = [\"/path/to/program\", \"arg\"]",
                );
                None
            }
            None if !spec.command.is_present() => {
                c.problem(
                    &key,
                    "not set: command = [\"/path/to/program\", \"arg\"] (or --token-command PROGRAM)",
                );
                None
            }
            None => None,
        }
    }

    fn for_audience(_: &Settings, _: &str) -> Result<Settings, String> {
        Err(
            "a command prints one token, for whatever audience it asks for; configure another \
             command source for another audience"
                .to_owned(),
        )
    }

    fn describe(s: &Settings) -> String {
        format!(
            "runs {} ({} arguments, not shown), at most {}s",
            s.argv.first().map(String::as_str).unwrap_or(""),
            s.argv.len().saturating_sub(1),
            s.timeout.as_secs()
        )
    }

    fn new(settings: &Settings) -> Result<Self, super::SetupError> {
        Ok(Self {
            settings: settings.clone(),
        })
    }

    fn origin(&self) -> String {
        format!("the command {}", self.program())
    }

    async fn fetch(&self, _probe: &Probe) -> Result<IdentityToken, Error> {
        self.run().await
    }
}

/// The process group of a run, killed when dropped unless the program exited by itself.
struct Group(Option<u32>);

impl Drop for Group {
    fn drop(&mut self) {
        let Some(pgid) = self.0.and_then(|id| i32::try_from(id).ok()) else {
            return;
        };
        // The leader has not been waited for, so its id cannot have been reused.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Runs a program for each token.
#[derive(Debug)]
pub struct CommandSource {
    settings: Settings,
}

impl CommandSource {
    /// The program's name only (its arguments may hold secrets).
    fn program(&self) -> String {
        let program = self.settings.argv.first().map(String::as_str).unwrap_or("");
        Path::new(program)
            .file_name()
            .map_or_else(|| program.to_owned(), |n| n.to_string_lossy().into_owned())
    }

    /// One run.
    async fn run(&self) -> Result<IdentityToken, Error> {
        let fail = |detail: String| Error::Unavailable {
            origin: self.origin(),
            detail,
            hint: "run the command by hand: it must print the token on stdout and exit 0"
                .to_owned(),
        };
        let mut child = tokio::process::Command::new(&self.settings.argv[0])
            .args(&self.settings.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A group of its own, so that what it starts can be ended with it.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("cannot be started: {}", e.kind())))?;
        let mut group = Group(child.id());
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(fail("internal: no pipes".to_owned()));
        };
        let run = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let mut stdout = stdout.take(MAX_OUTPUT + 1);
            let mut stderr = stderr.take(MAX_STDERR);
            let read_err = stderr.read_to_end(&mut err);
            tokio::pin!(read_err);
            // Read stdout, draining stderr meanwhile; a flood ends the run at once (the group
            // is killed) instead of waiting for a stderr that never closes.
            let mut err_done = false;
            let read_out = stdout.read_to_end(&mut out);
            tokio::pin!(read_out);
            loop {
                tokio::select! {
                    r = &mut read_out => {
                        r.map_err(|e| fail(format!("its output cannot be read: {}", e.kind())))?;
                        break;
                    }
                    _ = &mut read_err, if !err_done => err_done = true,
                }
            }
            if out.len() as u64 > MAX_OUTPUT {
                return Err(fail(format!("printed more than {MAX_OUTPUT} bytes")));
            }
            if !err_done {
                let _ = read_err.await;
            }
            let status = child
                .wait()
                .await
                .map_err(|e| fail(format!("cannot be waited for: {}", e.kind())))?;
            Ok((status, out, err))
        };
        let result = tokio::time::timeout(self.settings.timeout, run).await;
        let (status, out, err) = match result {
            Ok(Ok(done)) => {
                // It exited by itself: leave whatever it started alone.
                group.0 = None;
                done
            }
            // Dropping `group` ends the program and everything it started.
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(fail(format!(
                    "did not finish within {}s and was killed",
                    self.settings.timeout.as_secs()
                )));
            }
        };
        if !err.is_empty() {
            tracing::debug!(
                program = %self.program(),
                stderr = %String::from_utf8_lossy(&err),
                "the command's stderr (shown at debug level only: it may hold secrets)"
            );
        }
        if !status.success() {
            let code = status.code().map_or_else(
                || "was killed by a signal".to_owned(),
                |c| format!("exited with code {c}"),
            );
            let stderr = match err.len() as u64 {
                0 => "stderr was empty".to_owned(),
                n if n >= MAX_STDERR => format!(
                    "stderr had {MAX_STDERR} bytes or more (run with STS_SIDECAR_LOG=debug to see them)"
                ),
                n => format!("stderr had {n} bytes (run with STS_SIDECAR_LOG=debug to see them)"),
            };
            return Err(fail(format!("{code}; {stderr}")));
        }
        let token = std::str::from_utf8(&out)
            .map_err(|_| fail("printed something that is not text".to_owned()))?
            .trim();
        if token.is_empty() {
            return Err(fail("printed nothing".to_owned()));
        }
        Ok(IdentityToken::new(token))
    }
}
