//! `chi completions bash|zsh|fish`: the shell completion script, on stdout.

use std::process::ExitCode;

use clap_complete::Shell;

use crate::exit;

fn after_help() -> String {
    format!(
        "Install, for example:\n  \
         bash: chi completions bash > ~/.local/share/bash-completion/completions/chi\n  \
         zsh:  chi completions zsh > ~/.zfunc/_chi   (with ~/.zfunc in fpath)\n  \
         fish: chi completions fish > ~/.config/fish/completions/chi.fish\n\n{}",
        exit::section(&[exit::SUCCESS, exit::USAGE])
    )
}

/// Flags of `chi completions`.
#[derive(clap::Args, Debug)]
#[command(after_help = after_help())]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_parser = ["bash", "zsh", "fish"])]
    shell: String,
}

/// Prints the script for `command` (the whole `chi` command line); a closed stdout is not an
/// error.
pub(crate) fn run(args: CompletionsArgs, mut command: clap::Command) -> anyhow::Result<ExitCode> {
    let shell = match args.shell.as_str() {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        _ => Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "chi", &mut script);
    crate::output::write_stdout(&script)?;
    Ok(ExitCode::SUCCESS)
}
