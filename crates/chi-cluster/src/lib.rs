//! chi-cluster: chi's [`Task<T>`](chi::Task) API across machines, on Redis Streams with
//! consumer groups.
//!
//! TODO docs
#![warn(missing_docs)]

mod client;
mod codec;
mod conn;
mod def;
mod error;
pub mod keys;
mod map;
mod reader;
mod status;
mod worker;

pub use client::{ClientMetrics, Cluster, ClusterBuilder};
pub use codec::DEFAULT_MAX_PAYLOAD;
pub use def::TaskDef;
pub use error::{ClusterError, SubmitError};
pub use map::ClusterMap;
pub use status::{QueueStatus, WorkerStatus, queues, status};
pub use worker::{StopHandle, Worker, WorkerBuilder};
