//! Writing results: to stdout (a closed stdout, as with `| head`, is not an error) or to the
//! file `--output` names.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Writes `bytes` to stdout and flushes; a broken pipe counts as success.
pub(crate) fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

/// Writes `text` and a newline to `path` (created or truncated), or to stdout without one.
pub(crate) fn write_text(path: Option<&Path>, text: &str) -> anyhow::Result<()> {
    let line = format!("{text}\n");
    match path {
        None => write_stdout(line.as_bytes()),
        Some(path) => {
            std::fs::write(path, line).with_context(|| format!("cannot write {}", path.display()))
        }
    }
}
