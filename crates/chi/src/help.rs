//! The "a waiting worker helps" hook: how a thread blocked on a [`Task`](crate::Task) runs
//! other work meanwhile, without the task knowing which executor (if any) the thread belongs
//! to.
//!
//! A pool worker installs a hook on its own thread for as long as it runs ([`install`]); an
//! unbounded wait on any task calls [`help_while`] first, which runs the hook if this thread
//! has one. The thread pool's hook runs queued work of the worker's own pool until the task is
//! done or nothing is queued, so a task may submit a task and wait for it even on a pool of one
//! worker. Timed waits never help (a helped job may take any time).
//!
//! What a worker helps with does not depend on what it waits for: a thread-pool worker that
//! waits on a process-pool task, a [`Completer`](crate::Completer)'s task or a task of another
//! thread pool also runs queued work of its own pool meanwhile. That is deliberate: the worker
//! would otherwise sit blocked while its pool has work, and the waited task finishes on another
//! thread either way. The cost is the same as for waits on its own pool's tasks: the wait
//! returns only once the helped job has finished.
//!
//! Layering: this module imports nothing from chi; `task/` consults it and `thread_pool/`
//! installs into it, so neither of the two imports the other.

use std::cell::Cell;

/// Runs queued work while `done()` is false; returns when `done()` is true or nothing is left
/// to run on this thread's behalf.
pub(crate) type Hook = fn(done: &dyn Fn() -> bool);

thread_local! {
    /// This thread's hook, set while a pool worker runs on it.
    static HOOK: Cell<Option<Hook>> = const { Cell::new(None) };
}

/// Installs `hook` on the calling thread until the returned guard is dropped.
#[must_use = "the hook is removed when the guard is dropped"]
pub(crate) fn install(hook: Hook) -> Installed {
    let previous = HOOK.with(|h| h.replace(Some(hook)));
    Installed { previous }
}

/// Removes the hook [`install`] set (restoring any earlier one) when dropped.
pub(crate) struct Installed {
    previous: Option<Hook>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        // `try_with`: a guard dropped during thread-local teardown just leaves nothing behind.
        let _ = HOOK.try_with(|h| h.set(self.previous));
    }
}

/// If this thread has a hook, runs it with `done`; otherwise returns at once.
pub(crate) fn help_while(done: impl Fn() -> bool) {
    if let Some(hook) = HOOK.try_with(Cell::get).ok().flatten() {
        hook(&done);
    }
}
