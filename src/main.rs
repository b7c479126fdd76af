//! The `sts-sidecar` binary: parse the command line, install logging, run the subcommand, and
//! map its error to an exit code (0 ok, 64 configuration/usage, 1 runtime failure).

use clap::{CommandFactory as _, FromArgMatches as _};

use sts_sidecar::cli::{Cli, Command};
use sts_sidecar::cmd::{self, EXIT_CONFIG};
use sts_sidecar::config::flags::boolean;
use sts_sidecar::env::{Env as _, ProcessEnv};
use sts_sidecar::hardening::{self, CoreLimit, ENV_ALLOW_CORE_DUMPS};
use sts_sidecar::telemetry::{ENV_LOG, ENV_LOG_FORMAT};

fn main() {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { EXIT_CONFIG } else { 0 });
        }
    };
    let Some((_, sub)) = matches.subcommand() else {
        eprintln!("sts-sidecar: a subcommand is required (see --help)");
        std::process::exit(EXIT_CONFIG);
    };
    let env = ProcessEnv;
    // `exec` shares its stderr with the command it runs: warnings and errors only, unless the
    // user asks for more.
    let log = env
        .var(ENV_LOG)
        .or_else(|| matches!(cli.command, Command::Exec(_)).then(|| "warn".to_owned()));
    if let Err(e) = sts_sidecar::telemetry::init(log.as_deref(), env.var(ENV_LOG_FORMAT).as_deref())
    {
        eprintln!("sts-sidecar: {}", sts_sidecar::report::chain(&e));
        std::process::exit(EXIT_CONFIG);
    }
    let allow_dumps = match cli.allow_core_dumps {
        Some(allow) => allow,
        None => match env.var(ENV_ALLOW_CORE_DUMPS).map(|v| boolean(&v)) {
            None => false,
            Some(Ok(allow)) => allow,
            Some(Err(e)) => {
                eprintln!("sts-sidecar: {ENV_ALLOW_CORE_DUMPS}: {e}");
                std::process::exit(EXIT_CONFIG);
            }
        },
    };
    let core = match cli.command {
        Command::Exec(_) => CoreLimit::Inherit,
        _ => CoreLimit::Zero,
    };
    // Before any secret is read, and before the runtime's threads exist.
    hardening::apply(allow_dumps, core);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sts-sidecar: cannot start the async runtime: {e}");
            std::process::exit(cmd::EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Serve(args) => cmd::serve::run(args, sub, &env).await.map(|()| 0),
            Command::Exec(args) => cmd::exec::run(args, sub, &env).await,
            Command::CredentialProcess(args) => cmd::credential_process::run(args, sub, &env).await,
            Command::Check(args) => cmd::check::run(args, sub, &env).await,
            Command::Issuer(args) => cmd::issuer::run(args, sub, &env).await.map(|()| 0),
            Command::Completions(args) => {
                cmd::completions::run(args, &mut std::io::stdout().lock()).map(|()| 0)
            }
            Command::GcpCredentials(args) => cmd::gcp_credentials::run(args, &env).map(|()| 0),
        }
    });
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            tracing::debug!(error = %format!("{:#}", e.source), "exiting");
            eprintln!("sts-sidecar: {:#}", e.source);
            std::process::exit(e.code);
        }
    }
}
