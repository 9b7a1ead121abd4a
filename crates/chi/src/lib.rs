//! chi (池, "pool"): bounded, fast, fault-tolerant thread and process pools with a futures API.
#![warn(missing_docs)]

mod bulk;
mod error;
mod loom;
mod task;
pub mod process_pool;
pub mod thread_pool;
mod unwind;

pub use error::{
    BuildError, BuildErrorKind, ExitReason, ResultTimeoutError, SubmitError, SubmitTimeoutError, TaskError,
    TrySubmitError,
};
pub use task::Task;
pub use thread_pool::{Metrics, ThreadPool, ThreadPoolBuilder};
pub use bulk::{AsCompleted, AsCompletedTimeout, Map, ReturnWhen, WaitTimeout, as_completed, as_completed_timeout, wait};
