//! Every Redis key, consumer-group name and message field chi-cluster uses, in one place.
//!
//! One queue is one hash tag: every key of queue `q` contains `{q}`, so Redis Cluster puts all
//! of them on one slot and the multi-key pipelines and transactions here stay on one node.
//!
//! | Key | Type | Holds |
//! |---|---|---|
//! | `chi:{q}:tasks` | stream, group `workers` | tasks waiting or running; an entry is deleted when it is answered |
//! | `chi:{q}:res:<client>` | stream | results for one client, trimmed as it reads, expiring when it goes away |
//! | `chi:{q}:workers` | hash | worker id → last heartbeat (Unix ms) |
//! | `chi:{q}:idle` | hash | worker id → processes it has idle, while it finds the queue empty |
//! | `chi:{q}:prefetchers` | set | ids of the workers that prefetch (the idle signal is sent only while another one is there) |
//! | `chi:{q}:cancel` | sorted set | cancelled task ids, scored by cancel time (Unix ms) |
//! | `chi:{q}:dead` | stream, capped | dead-lettered tasks (past `max_attempts`) |
//! | `chi:{q}:seq` | counter | client and worker ids |
//! | `chi:{q}:done:<sec>` | counter, expiring | tasks answered in one second (for `status`) |
//!
//! One pub/sub channel: `chi:{q}:idle-signal`, on which a worker that newly shows idle
//! processes publishes its id, for workers that prefetch to hand it their waiting tasks.

/// The consumer group every worker of a queue reads the task stream with.
pub const GROUP: &str = "workers";

/// How many entries the dead-letter stream keeps (older ones are trimmed).
pub const DEAD_LETTER_MAX: usize = 10_000;

/// How long (seconds) a per-second throughput counter lives.
pub const DONE_COUNTER_TTL: u64 = 120;

/// How long (ms) a cancel mark is kept: a task cancelled longer ago than this is forgotten.
pub const CANCEL_KEEP_MS: u64 = 24 * 3600 * 1000;

/// How long (ms) a worker's heartbeat may be silent before live workers forget it (remove it
/// from the heartbeat hash; its tasks were reclaimed long before).
pub const FORGET_WORKER_MS: u64 = 60_000;

/// The names of one queue's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueKeys {
    queue: String,
    /// The task stream.
    pub tasks: String,
    /// The worker heartbeat hash.
    pub workers: String,
    /// Workers with idle processes and nothing to read: id → how many processes.
    pub idle: String,
    /// The ids of the workers that prefetch.
    pub prefetchers: String,
    /// The pub/sub channel a worker that newly shows idle processes publishes its id on
    /// (prefetching workers listen).
    pub idle_signal: String,
    /// The set of cancelled task ids.
    pub cancel: String,
    /// The dead-letter stream.
    pub dead: String,
    /// The id counter.
    pub seq: String,
}

impl QueueKeys {
    /// The keys of queue `queue`.
    pub fn new(queue: &str) -> QueueKeys {
        let p = format!("chi:{{{queue}}}");
        QueueKeys {
            queue: queue.to_owned(),
            tasks: format!("{p}:tasks"),
            workers: format!("{p}:workers"),
            idle: format!("{p}:idle"),
            idle_signal: format!("{p}:idle-signal"),
            prefetchers: format!("{p}:prefetchers"),
            cancel: format!("{p}:cancel"),
            dead: format!("{p}:dead"),
            seq: format!("{p}:seq"),
        }
    }

    /// The queue's name.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The result stream of client `client`.
    pub fn results(&self, client: &str) -> String {
        format!("chi:{{{}}}:res:{client}", self.queue)
    }

    /// The counter of tasks answered during Unix second `sec`.
    pub fn done(&self, sec: u64) -> String {
        format!("chi:{{{}}}:done:{sec}", self.queue)
    }
}

/// Field names of a task entry in `chi:{q}:tasks`.
pub mod task {
    /// Task id: `<client id>-<sequence>`.
    pub const ID: &str = "id";
    /// The task's registered name.
    pub const NAME: &str = "name";
    /// Hash of the argument and result types (16 hex digits).
    pub const SIG: &str = "sig";
    /// The encoded argument.
    pub const PAYLOAD: &str = "p";
    /// Per-task timeout in ms (absent: none).
    pub const TIMEOUT: &str = "timeout";
    /// The result stream to answer on.
    pub const REPLY: &str = "reply";
    /// Seconds a result is kept for a client that stopped reading.
    pub const TTL: &str = "ttl";
    /// How many runs the task may have (deliveries to workers that died, and retried panics).
    pub const MAX_ATTEMPTS: &str = "max";
    /// `1` when a run that panicked is retried (the definition's `retry_on_panic`).
    pub const RETRY_ON_PANIC: &str = "rp";
    /// Runs the task had before this entry was added (absent: none): an entry a stopping
    /// worker handed back, or a panicked run put back for a retry, carries its count on, and
    /// a delivery's attempt number is this plus the entry's delivery count.
    pub const TRIES: &str = "tries";
}

/// Field names of a result entry in `chi:{q}:res:<client>`.
pub mod result {
    /// The task id the result is for.
    pub const ID: &str = "id";
    /// `ok` (payload is the encoded value) or `err` (payload is an encoded error).
    pub const KIND: &str = "k";
    /// The encoded value or error.
    pub const PAYLOAD: &str = "p";
    /// Which delivery of the task produced this result (1 = first).
    pub const ATTEMPT: &str = "att";
    /// The worker that answered.
    pub const WORKER: &str = "w";
    /// [`KIND`] of a value.
    pub const OK: &str = "ok";
    /// [`KIND`] of an error.
    pub const ERR: &str = "err";
}

/// Field names of a dead-letter entry in `chi:{q}:dead`.
pub mod dead {
    /// The task id.
    pub const ID: &str = "id";
    /// The task's name.
    pub const NAME: &str = "name";
    /// Deliveries the task had.
    pub const ATTEMPTS: &str = "attempts";
    /// The worker that dead-lettered it (the one that found it past its attempts).
    pub const HOLDER: &str = "holder";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_queue_shares_its_hash_tag() {
        let k = QueueKeys::new("q1");
        for key in [
            &k.tasks,
            &k.workers,
            &k.idle,
            &k.idle_signal,
            &k.prefetchers,
            &k.cancel,
            &k.dead,
            &k.seq,
        ] {
            assert!(key.starts_with("chi:{q1}:"), "{key}");
        }
        assert_eq!(k.results("7"), "chi:{q1}:res:7");
        assert_eq!(k.done(5), "chi:{q1}:done:5");
    }
}
