//! Logging to stderr through `tracing`, at a level chosen by -v/-q (or RUST_LOG), coloured as
//! `--color`/`NO_COLOR` say.

use tracing_subscriber::EnvFilter;

/// Installs the stderr subscriber. -v: debug for chi's crates (connections, and each message
/// `chi serve` receives); -vv: trace; -q: warnings; -qq: errors. RUST_LOG, when set, wins.
pub(crate) fn init(verbose: u8, quiet: u8, color: bool) {
    let ours = match (verbose, quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (_, 0) => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    let default = format!("warn,chi={ours},chi_net={ours},chi_cli={ours}");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // A second init (never in the binary) would fail; logging is best effort either way.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(verbose > 0)
        .try_init();
}
