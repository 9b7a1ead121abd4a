//! The worker's reply thread: answers finished tasks in batches, each batch one transaction
//! (`XADD` result + `EXPIRE` + `XACK` + `XDEL`, and the dead letter if any), then frees their
//! slots.

use super::Shared;
use crate::codec::{self, Outcome};
use crate::conn::{self, Link, lock};
use crate::keys::{self, GROUP};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// A task that was past its attempts: what the dead-letter stream keeps.
#[derive(Debug)]
pub(super) struct Dead {
    pub(super) name: String,
    pub(super) attempts: u64,
}

/// One answer to send (or, with no reply key, an entry to drop).
#[derive(Debug)]
pub(super) struct Reply {
    entry: String,
    task_id: String,
    reply_key: Option<String>,
    ttl: u64,
    attempt: u64,
    outcome: Outcome,
    dead: Option<Dead>,
}

impl Reply {
    pub(super) fn answer(
        entry: &str,
        task_id: &str,
        reply_key: &str,
        ttl: u64,
        attempt: u64,
        outcome: Outcome,
        dead: Option<Dead>,
    ) -> Reply {
        Reply {
            entry: entry.to_owned(),
            task_id: task_id.to_owned(),
            reply_key: Some(reply_key.to_owned()),
            ttl,
            attempt,
            outcome,
            dead,
        }
    }

    pub(super) fn drop_entry(entry: String) -> Reply {
        Reply {
            entry,
            task_id: String::new(),
            reply_key: None,
            ttl: 0,
            attempt: 0,
            outcome: Ok(Vec::new()),
            dead: None,
        }
    }

    pub(super) fn with_outcome(self, outcome: Outcome) -> Reply {
        Reply { outcome, ..self }
    }
}

/// Runs until every sender is gone and everything received is answered.
pub(super) fn run(s: &Shared, rx: &Receiver<Reply>) {
    let mut link = Link::new(s.target.clone(), &s.keys.tasks, Duration::from_secs(10));
    loop {
        let first = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        while batch.len() < 256
            && let Ok(r) = rx.try_recv()
        {
            batch.push(r);
        }
        send(s, &mut link, &batch);
        let mut st = lock(&s.state);
        for r in &batch {
            st.held.remove(&r.entry);
        }
        st.free = (st.free + batch.len()).min(s.slots);
        s.changed.notify_all();
    }
}

/// Sends one batch, retrying across reconnects until Redis takes it (answers are never
/// dropped: the task would otherwise run again elsewhere after the lease).
fn send(s: &Shared, link: &mut Link, batch: &[Reply]) {
    let sec = conn::now_ms() / 1000;
    let done_key = s.keys.done(sec);
    loop {
        let r = link.call(Some(Instant::now() + Duration::from_secs(5)), |c| {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for r in batch {
                add_reply(&mut pipe, s, r);
            }
            pipe.cmd("INCRBY").arg(&done_key).arg(batch.len()).ignore();
            pipe.cmd("EXPIRE")
                .arg(&done_key)
                .arg(keys::DONE_COUNTER_TTL)
                .ignore();
            pipe.query::<()>(c)
        });
        match r {
            Ok(Ok(())) => return,
            Ok(Err(e)) => {
                tracing::error!(worker = %s.id, "answering {} tasks failed: {e}", batch.len());
                return;
            }
            Err(e) => tracing::warn!(worker = %s.id, "Redis unreachable, will retry: {}", e.0),
        }
    }
}

fn add_reply(pipe: &mut redis::Pipeline, s: &Shared, r: &Reply) {
    use keys::result as f;
    if let Some(key) = &r.reply_key {
        let (kind, payload) = match &r.outcome {
            Ok(bytes) => (f::OK, bytes.clone()),
            Err(e) => (f::ERR, codec::encode(e).unwrap_or_default()),
        };
        pipe.cmd("XADD")
            .arg(key)
            .arg("*")
            .arg(f::ID)
            .arg(&r.task_id)
            .arg(f::KIND)
            .arg(kind)
            .arg(f::ATTEMPT)
            .arg(r.attempt)
            .arg(f::WORKER)
            .arg(&s.id)
            .arg(f::PAYLOAD)
            .arg(payload)
            .ignore();
        pipe.cmd("EXPIRE").arg(key).arg(r.ttl.max(1)).ignore();
    }
    if let Some(dead) = &r.dead {
        use keys::dead as d;
        pipe.cmd("XADD")
            .arg(&s.keys.dead)
            .arg("MAXLEN")
            .arg("~")
            .arg(keys::DEAD_LETTER_MAX)
            .arg("*")
            .arg(d::ID)
            .arg(&r.task_id)
            .arg(d::NAME)
            .arg(&dead.name)
            .arg(d::ATTEMPTS)
            .arg(dead.attempts)
            .arg(d::HOLDER)
            .arg(&s.id)
            .ignore();
    }
    pipe.cmd("XACK")
        .arg(&s.keys.tasks)
        .arg(GROUP)
        .arg(&r.entry)
        .ignore();
    pipe.cmd("XDEL").arg(&s.keys.tasks).arg(&r.entry).ignore();
}
