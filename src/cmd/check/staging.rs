//! `check --config-only`: the configuration judged as `serve` would judge it, without reading
//! an identity or calling anything; at staging (the buildpack), with Diego's run-time values
//! standing in and the app's files looked for where it is staged.

use std::path::Path;

use clap::ArgMatches;

use super::{Report, print_config};
use crate::app;
use crate::cli::CheckArgs;
use crate::cmd::ExitError;
use crate::config::{Config, Env, Overrides};

/// Where Diego puts the instance identity files at run time (a read-only bind mount).
const DIEGO_CERT: &str = "/etc/cf-instance-credentials/instance.crt";
const DIEGO_KEY: &str = "/etc/cf-instance-credentials/instance.key";

/// Where a Cloud Foundry app runs; at staging it is in the build directory (`--app-dir`).
const CF_APP_ROOT: &str = "/home/vcap/app";

/// `check --config-only`: the configuration as `serve` would judge it, nothing read or called.
pub(super) fn config_only(
    args: &CheckArgs,
    matches: &ArgMatches,
    env: &dyn Env,
) -> Result<i32, ExitError> {
    let at_run_time = AtRunTime { env };
    let flags = Overrides::new(matches, &at_run_time);
    let config = Config::load(&flags, &at_run_time)?;
    let staged = |path: &Path| {
        let dir = args.app_dir.as_deref()?;
        let rest = path.strip_prefix(CF_APP_ROOT).ok()?;
        Some(dir.join(rest))
    };
    let mut unreadable = app::unreadable_files(&config, |p| staged(p).unwrap_or(p.to_path_buf()));
    // What stands in for a variable Diego sets at run time is not there at staging.
    unreadable
        .retain(|f| !(STANDING_IN.contains(&f.origin.as_str()) && env.var(&f.origin).is_none()));
    // At staging, only the app's own files are there to be checked; one elsewhere may be a
    // volume or a platform file that appears at run time.
    let (missing, later): (Vec<_>, Vec<_>) = unreadable
        .into_iter()
        .partition(|f| args.app_dir.is_none() || staged(&f.path).is_some());
    if !missing.is_empty() {
        let lines: Vec<String> = missing.iter().map(ToString::to_string).collect();
        return Err(ExitError::config(anyhow::anyhow!(
            "files the configuration names cannot be used:\n  {}",
            lines.join("\n  ")
        )));
    }
    let mut out = Report::default();
    print_config(&mut out, &config);
    for f in &later {
        out.line(format!(
            "  warning           {f} at staging: it must be there when the app runs"
        ));
    }
    out.line(
        "
configuration ok (--config-only: no identity read, nothing called)",
    );
    Ok(0)
}

/// What `AtRunTime` stands in for.
const STANDING_IN: [&str; 4] = [
    "CF_INSTANCE_CERT",
    "CF_INSTANCE_KEY",
    "CF_INSTANCE_INDEX",
    "CF_INSTANCE_GUID",
];

/// The environment, with the instance variables Diego sets at run time when they are not set
/// yet (at staging): the identity files' paths, and an instance index and GUID for templates.
struct AtRunTime<'a> {
    env: &'a dyn Env,
}

impl AtRunTime<'_> {
    fn standing_in(name: &str) -> Option<&'static str> {
        match name {
            "CF_INSTANCE_CERT" => Some(DIEGO_CERT),
            "CF_INSTANCE_KEY" => Some(DIEGO_KEY),
            "CF_INSTANCE_INDEX" => Some("0"),
            "CF_INSTANCE_GUID" => Some("00000000-0000-0000-0000-000000000000"),
            _ => None,
        }
    }
}

impl Env for AtRunTime<'_> {
    fn var(&self, name: &str) -> Option<String> {
        self.env
            .var(name)
            .or_else(|| Self::standing_in(name).map(str::to_owned))
    }

    fn vars(&self) -> Vec<(String, String)> {
        let mut vars = self.env.vars();
        for name in STANDING_IN {
            if !vars.iter().any(|(k, _)| k == name)
                && let Some(value) = Self::standing_in(name)
            {
                vars.push((name.to_owned(), value.to_owned()));
            }
        }
        vars
    }
}
