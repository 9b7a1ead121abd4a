//! `chi load` (placeholder until the load generator lands; its owner replaces this file).

/// Flags of `chi load`.
#[derive(clap::Args, Debug)]
pub(crate) struct LoadArgs {}

/// Runs the load generator.
pub(crate) fn run(_args: LoadArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("`chi load` is not built yet")
}
