//! The process-pool part of `chi demo` (being written).

/// Runs the process-pool walkthrough.
pub(crate) fn run_process_demo() -> anyhow::Result<()> {
    Ok(())
}
