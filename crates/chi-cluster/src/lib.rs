//! chi-cluster: chi's [`Task<T>`](chi::Task) API across machines, on Redis Streams with
//! consumer groups.
//!
//! Redis (or Valkey) holds the queue, the pending entries and the results; chi adds typed
//! tasks, its own `Task<T>` handle, workers that run tasks in a local chi process pool (crash
//! isolation, timeouts, cancel), and recovery. There is no broker or scheduler of chi's own.
//!
//! ```no_run
//! use chi_cluster::{Cluster, TaskDef, Worker};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//! // The same constant in the client and in the workers: name + argument and result types.
//! static SQUARE: TaskDef<u64, u64> = TaskDef::new("square", square);
//!
//! fn main() {
//!     chi::process_pool::init(); // a worker's local process pool re-runs this binary
//!     if std::env::args().nth(1).as_deref() == Some("worker") {
//!         let w = Worker::builder().connect("redis://127.0.0.1:6379").task(&SQUARE);
//!         w.processes(4).run().unwrap(); // serves until SIGTERM (see `StopHandle`)
//!         return;
//!     }
//!     let cluster = Cluster::connect("redis://127.0.0.1:6379").unwrap();
//!     let task = cluster.submit(&SQUARE, 12).unwrap(); // a chi::Task<u64>
//!     task.add_done_callback(|r| println!("got {r:?}"));
//!     assert_eq!(task.result(), Ok(144));
//!     let squares: Vec<u64> = cluster.map(&SQUARE, 1..=1000, 256).map(Result::unwrap).collect();
//!     assert_eq!(squares[9], 100);
//!     cluster.shutdown();
//! }
//! ```
//!
//! # The handle
//!
//! [`Cluster::submit`] returns chi's [`Task<R>`](chi::Task): `result`, `result_timeout`,
//! `done`, `cancel`, `add_done_callback`, [`chi::as_completed`], [`chi::wait`] and `.await`
//! work unchanged. A reader thread per client blocks on the client's result stream and
//! completes the handles.
//!
//! # Semantics
//!
//! Each row is checked by the named test (in `tests/`).
//!
//! | Situation | What happens | Test |
//! |---|---|---|
//! | normal run | the result reaches the handle once; a panic is the task's error, not retried | `basic::results_come_from_two_workers`, `basic::the_handle_is_chis_task` |
//! | a task that panics, its definition [`retry_on_panic`](TaskDef::retry_on_panic) | the run goes back to the queue (any worker) until the task had `max_attempts` runs; the last panic is the handle's error; without the opt-in one run | `faults::a_panicking_task_is_retried_only_when_its_definition_asks` |
//! | worker process killed mid-task | live workers reclaim its tasks once its lease lapses (heartbeat ≤ 1 s, lease 5 s by default): the task runs again, attempt 2 | `faults::a_task_of_a_killed_worker_finishes_on_another_at_attempt_two` |
//! | a task kills every worker it reaches | at most `max_attempts` deliveries (default 3), then [`TaskError::WorkerDied`](chi::TaskError::WorkerDied) and a dead letter in `chi:{q}:dead`; workers keep serving | `faults::a_poison_task_ends_worker_died_and_is_dead_lettered` |
//! | a task crashes its process-pool process | `WorkerDied` with the signal at once (the crash is the task's), the worker lives on | `faults::a_crash_in_a_process_pool_worker_fails_only_that_task` |
//! | duplicate results (a "dead" worker was only slow) | first wins; later ones dropped and counted ([`ClientMetrics::duplicates`]) | `faults::a_cancelled_running_task_is_stopped_by_its_worker` |
//! | `cancel()` of a waiting task | the handle reports `Cancelled`; no worker ever starts it | `faults::a_cancelled_pending_task_never_starts` |
//! | `cancel()` of a running task | the handle reports `Cancelled`; its worker kills it (within a heartbeat) | `faults::a_cancelled_running_task_is_stopped_by_its_worker` |
//! | `cancel_pending()` | cancels only a task still in the queue, unread by any worker (its entry is deleted); once a worker has read it (or put it back under a new entry), false, and the task runs on | `faults::cancel_pending_takes_back_a_task_no_worker_has_read`, `faults::cancel_pending_leaves_a_started_task_alone`, `faults::cancel_pending_leaves_a_task_a_prefetching_worker_holds_alone`, `broker::a_task_taken_back_without_an_answer_ends_cancelled_not_lost` |
//! | `shutdown()` after a cancel | does not wait for cancelled tasks, answered or not | `faults::shutdown_does_not_wait_for_a_cancelled_task` |
//! | task past its deadline ([`TaskDef::with_timeout`], [`ClusterBuilder::task_timeout`]) | killed, `TimedOut` | `faults::a_task_past_its_deadline_times_out` |
//! | unknown name / other argument or result types | never run; `PoolFailed` naming the problem, within one delivery | `basic::an_unknown_name_or_other_types_get_a_clear_error` |
//! | argument over the size limit (64 MiB default) | refused at submit ([`SubmitError::TooLarge`]), argument handed back; 16 MiB each way works | `basic::sixteen_mib_each_way_and_the_size_limit` |
//! | bounded queue full | `submit` blocks, `try_submit` gives `Full`, `submit_timeout` gives `Timeout` | `basic::a_bounded_queue_blocks_or_says_full` |
//! | one long task, many short ones, two workers | a worker takes only as many tasks as it has free slots, and its local process pool sends a task only to an idle process: the short ones all finish while the long one runs | `faults::a_long_task_does_not_hold_back_short_ones` |
//! | [`WorkerBuilder::prefetch`]`(n)` | the worker takes up to `n` tasks beyond its free slots (fewer round trips); they wait in its local pool's queue for the first free process, never inside a busy one | `faults::a_prefetching_worker_takes_tasks_beyond_its_free_slots` |
//! | a prefetching worker holds waiting tasks while another worker has an idle process and an empty queue | as soon as the idle worker signals (or at the next heartbeat, if the signal was lost) it hands back as many waiting tasks as the others have idle processes (only tasks not yet started, not counted as runs), and takes no more than its own idle processes until they are busy again: the idle worker runs them while the long task goes on | `faults::a_prefetching_worker_hands_its_waiting_tasks_to_an_idle_one`, `faults::two_prefetching_workers_both_hand_their_waiting_tasks_to_one_idle_worker`, `faults::an_idle_worker_signals_a_prefetching_one_without_waiting_for_its_heartbeat`, `faults::every_prefetching_worker_hears_an_idle_workers_signal` |
//! | every kind of outcome (result, panic, unknown name, other types, timeout, crash, cancel) | a slot is free again as soon as its run ends (the answer is sent meanwhile), exactly once: the worker keeps running as many tasks at once as it has slots, never more | `faults::every_kind_of_outcome_gives_its_slot_back_once` |
//! | a worker's leases lapse while its task runs (Redis away longer than the lease) and its own reclaim takes the entry back | the run it holds answers the task: it is not run twice and takes no second slot | `faults::a_worker_that_reclaims_its_own_running_task_neither_runs_it_twice_nor_loses_a_slot` |
//! | several clients | one result stream each; workers are shared | `basic::two_clients_share_workers` |
//! | worker stopped (SIGTERM → [`StopHandle::stop`]) | takes nothing new, finishes and answers what runs, leaves | `faults::a_stopped_worker_finishes_what_it_holds` |
//! | a stopping worker holds tasks it has not started (prefetched) | handed back to the queue at once (re-added and acknowledged in one script): another worker runs them without waiting for a lease; none runs twice, none is lost | `faults::a_stopping_worker_hands_back_what_it_has_not_started` |
//! | a stopping worker's task outlives [`WorkerBuilder::stop_grace`] (30 s) | stopped (a process-pool task is killed) and handed back, counted as a run; another worker finishes it | `faults::a_worker_stopped_past_its_grace_hands_back_its_running_task` |
//! | Redis killed and restarted, AOF on | nothing `submit` acknowledged is lost; clients and workers reconnect with back-off | `broker::with_aof_a_broker_restart_loses_nothing` |
//! | Redis restarted without persistence | each handle whose task vanished fails with a clear `PoolFailed` ("Redis lost task …"), never a hang; submits during the outage fail with `Unavailable` after the broker timeout | `broker::without_persistence_lost_tasks_fail_clearly_and_submits_say_unavailable` |
//! | the same, the client's reader first reaching Redis after the restart | a restart is told by the server's `run_id`, not by a dropped connection: the reader checks every task last seen on another Redis process | `broker::a_reader_that_first_connects_after_a_restart_still_finds_lost_tasks` |
//! | client died | its result stream expires after the result TTL; Redis memory after 20,000 tasks and a dead client is back at its baseline (answered entries are deleted, read results trimmed) | `faults::results_of_a_client_that_went_away_expire`, `faults::redis_memory_returns_to_baseline_after_a_client_dies` |
//! | Redis Cluster | each queue is one hash tag, so one slot: all its keys on one node, reached directly | `broker::a_three_node_redis_cluster_runs_hash_tagged_queues` |
//! | ordered `map` over 100,000 items | results in input order, lazily, bounded look-ahead, pipelined `XADD`s | `basic::map_is_ordered_and_lazy` |
//!
//! The promise: a task runs at least once and at most `max_attempts` times when workers die;
//! its result reaches the handle at most once; every other loss is a clear error on the
//! handle, never a hang.
//!
//! # Keys and messages
//!
//! See [`keys`]: one module names every key and field. A Redis Cluster is given as several
//! comma-separated URLs (or `redis+cluster://host:port`); each queue's hash tag is routed to
//! the node that owns its slot (a `MOVED` reply makes the connection look again).
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod client;
mod codec;
mod conn;
mod def;
mod error;
pub mod keys;
mod map;
mod reader;
mod shared;
mod status;
mod worker;

pub use client::{ClientMetrics, Cluster, ClusterBuilder};
pub use codec::DEFAULT_MAX_PAYLOAD;
pub use def::TaskDef;
pub use error::{ClusterError, SubmitError};
pub use map::ClusterMap;
pub use status::{QueueStatus, WorkerStatus, queues, status};
pub use worker::{StopHandle, Worker, WorkerBuilder};

/// Internals that chi-cluster's own tests run directly; not part of the API, may change.
#[doc(hidden)]
pub mod __private {
    pub use crate::shared::TAKE_BACK;
}
