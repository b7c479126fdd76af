//! `sts-sidecar completions SHELL`: a shell's completion script, or (`man`) the manual page,
//! both generated from the clap definitions of this very binary, so they cannot drift from it.

use clap::CommandFactory as _;

use super::ExitError;
use crate::cli::{Cli, CompletionsArgs, CompletionsFor};

/// Writes the script or page for `args` to `out` (a reader that stops early, such as `head`,
/// ends it quietly).
pub fn run(args: &CompletionsArgs, out: &mut dyn std::io::Write) -> Result<(), ExitError> {
    let text = render(args.shell)?;
    match out.write_all(&text).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(ExitError::failure(
            anyhow::anyhow!("writing to stdout: {e}"),
        )),
        _ => Ok(()),
    }
}

/// The script or page, whole.
pub fn render(what: CompletionsFor) -> Result<Vec<u8>, ExitError> {
    use clap_complete::Shell;
    let mut command = Cli::command();
    let name = command.get_name().to_owned();
    let shell = match what {
        CompletionsFor::Bash => Shell::Bash,
        CompletionsFor::Zsh => Shell::Zsh,
        CompletionsFor::Fish => Shell::Fish,
        CompletionsFor::Elvish => Shell::Elvish,
        CompletionsFor::Powershell => Shell::PowerShell,
        CompletionsFor::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .map_err(|e| ExitError::failure(anyhow::anyhow!("rendering the man page: {e}")))?;
            return Ok(page);
        }
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    Ok(script)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_and_the_page_name_every_subcommand() {
        for what in [
            CompletionsFor::Bash,
            CompletionsFor::Zsh,
            CompletionsFor::Fish,
            CompletionsFor::Elvish,
            CompletionsFor::Powershell,
            CompletionsFor::Man,
        ] {
            let text = String::from_utf8(render(what).expect("rendered")).expect("text");
            for sub in ["serve", "exec", "credential-process", "check", "issuer"] {
                // roff writes a hyphen as \-.
                let shown = if what == CompletionsFor::Man {
                    sub.replace('-', "\\-")
                } else {
                    sub.to_owned()
                };
                assert!(text.contains(&shown), "{what:?} lacks {sub}");
            }
        }
        let page = String::from_utf8(render(CompletionsFor::Man).expect("page")).expect("text");
        assert!(page.contains(".TH sts-sidecar 1"), "{}", &page[..200]);
        let bash = String::from_utf8(render(CompletionsFor::Bash).expect("bash")).expect("text");
        assert!(
            bash.contains("--token-service-url"),
            "flags are completed too"
        );
    }
}
