//! One module per subcommand: each holds its clap `Args` struct (flags, help, exit codes) and
//! its `run`, which returns the process's exit status.

pub(crate) mod client;
pub(crate) mod completions;
pub(crate) mod demo;
mod demo_process;
pub(crate) mod load;
pub(crate) mod serve;
