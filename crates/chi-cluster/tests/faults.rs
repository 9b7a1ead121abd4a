//! chi-cluster's recovery, against a real Redis with workers as separate processes: a worker
//! killed mid-task, poison tasks, cancel, timeouts, graceful stop, no head-of-line blocking,
//! results of a dead client expiring.

mod common;

use chi::{ExitReason, TaskError};
use chi_cluster::Cluster;
use common::tasks::runs;
use common::tasks::*;
use common::{RedisServer, TempDir, WorkerSpec, eventually, wait_workers};
use std::time::Duration;

chi::process_pool_test_entry!();

#[test]
fn __cluster_worker_entry() {
    common::worker_main();
}

/// Lets the gated tasks `names` finish.
fn open(dir: &TempDir, names: &[&str]) {
    for n in names {
        std::fs::write(dir.path(&format!("{n}.open")), "").unwrap();
    }
}

fn started_by(dir: &TempDir, name: &str) -> Vec<u32> {
    std::fs::read_to_string(dir.path(&format!("{name}.started")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

#[test]
fn a_task_of_a_killed_worker_finishes_on_another_at_attempt_two() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut w1 = WorkerSpec::new(&redis.url()).spawn();
    let client = Cluster::connect(&redis.url()).unwrap();
    let dir = TempDir::new("kill");
    let task = client.submit(&GATED, (dir.str(), "k".into())).unwrap();
    eventually("the task started", || !started_by(&dir, "k").is_empty());
    assert_eq!(started_by(&dir, "k"), vec![w1.pid()]);
    let _w2 = WorkerSpec::new(&redis.url()).spawn();
    let killed = w1.pid();
    w1.kill();
    std::fs::write(dir.path("k.open"), "").unwrap();
    let pid = task.result().unwrap();
    assert_ne!(pid, killed, "another worker answered");
    assert_eq!(
        started_by(&dir, "k").len(),
        2,
        "it ran twice: once per delivery"
    );
    assert_eq!(
        client.metrics().retried,
        1,
        "the result came from attempt 2"
    );
}

#[test]
fn a_poison_task_ends_worker_died_and_is_dead_lettered() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let spec = WorkerSpec::new(&redis.url()).threads();
    let mut workers = vec![spec.spawn(), spec.spawn()];
    let client = Cluster::connect(&redis.url()).unwrap();
    let task = client.submit(&ABORT, 1).unwrap();
    // Every worker the task reaches dies; keep two alive (bounded: 3 attempts kill 3).
    let mut deaths = 0;
    eventually("the poison task ends", || {
        for w in &mut workers {
            if w.try_exit().is_some() {
                deaths += 1;
                assert!(
                    deaths <= 3,
                    "the task was delivered more than max_attempts times"
                );
                *w = spec.spawn();
            }
        }
        task.done()
    });
    assert_eq!(deaths, 3);
    assert_eq!(
        task.result(),
        Err(TaskError::WorkerDied(ExitReason::Disconnected))
    );
    let st = chi_cluster::status(&redis.url(), "default").unwrap();
    assert_eq!(st.dead_letters, 1);
    assert_eq!(st.recent_dead[0].1, "abort");
    // The workers keep serving.
    assert_eq!(client.submit(&SQUARE, 9).unwrap().result(), Ok(81));
}

#[test]
fn a_crash_in_a_process_pool_worker_fails_only_that_task() {
    let Some((_redis, _w, client)) = common::with_worker() else {
        return;
    };
    let e = client.submit(&ABORT, 1).unwrap().result().unwrap_err();
    assert!(
        matches!(e, TaskError::WorkerDied(ExitReason::Signal(6))),
        "{e:?}"
    );
    assert_eq!(client.submit(&SQUARE, 4).unwrap().result(), Ok(16));
}

#[test]
fn a_cancelled_pending_task_never_starts() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let client = Cluster::connect(&redis.url()).unwrap();
    let dir = TempDir::new("cancel-pending");
    let task = client.submit(&GATED, (dir.str(), "p".into())).unwrap();
    assert!(task.cancel());
    assert_eq!(task.result(), Err(TaskError::Cancelled));
    // One slot, FIFO: the next task is answered after the cancelled one was seen.
    let _w = WorkerSpec::new(&redis.url()).spawn();
    assert_eq!(client.submit(&SQUARE, 3).unwrap().result(), Ok(9));
    assert!(started_by(&dir, "p").is_empty(), "the cancelled task ran");
}

#[test]
fn cancel_pending_takes_back_a_task_no_worker_has_read() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let client = Cluster::connect(&redis.url()).unwrap();
    let dir = TempDir::new("cancel-pending-take-back");
    let task = client.submit(&GATED, (dir.str(), "p".into())).unwrap();
    let kept = client.submit(&SQUARE, 4).unwrap();
    assert_eq!(redis.int(&["XLEN", "chi:{default}:tasks"]), 2);
    assert!(task.cancel_pending());
    assert!(task.cancel_pending(), "asking again still answers true");
    assert_eq!(task.result(), Err(TaskError::Cancelled));
    // Its entry is gone from the queue, and the client no longer waits for it.
    assert_eq!(redis.int(&["XLEN", "chi:{default}:tasks"]), 1);
    assert_eq!(client.metrics().pending, 1);
    let _w = WorkerSpec::new(&redis.url()).spawn();
    assert_eq!(kept.result(), Ok(16));
    assert_eq!(client.submit(&SQUARE, 3).unwrap().result(), Ok(9));
    assert!(started_by(&dir, "p").is_empty(), "the cancelled task ran");
    assert_eq!(client.metrics().duplicates, 0);
}

#[test]
fn cancel_pending_leaves_a_started_task_alone() {
    let Some((_redis, _w, client)) = common::with_worker() else {
        return;
    };
    let dir = TempDir::new("cancel-pending-running");
    let task = client.submit(&GATED, (dir.str(), "r".into())).unwrap();
    eventually("the task started", || !started_by(&dir, "r").is_empty());
    assert!(!task.cancel_pending(), "a worker has it: not cancelled");
    assert!(!task.done() && !task.cancelled());
    open(&dir, &["r"]);
    assert_eq!(task.result(), Ok(started_by(&dir, "r")[0]));
}

#[test]
fn cancel_pending_leaves_a_task_a_prefetching_worker_holds_alone() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // One process, one task taken ahead: the second task is read (in the worker's pending
    // entries) but waits in its pool behind the long one.
    let _w = WorkerSpec::new(&redis.url()).prefetch(1).spawn();
    let client = Cluster::connect(&redis.url()).unwrap();
    let dir = TempDir::new("cancel-pending-prefetched");
    let long = client.submit(&GATED, (dir.str(), "l".into())).unwrap();
    eventually("the long task started", || {
        !started_by(&dir, "l").is_empty()
    });
    let ahead = client.submit(&SQUARE, 7).unwrap();
    let status = || chi_cluster::status(&redis.url(), "default").unwrap();
    eventually("the worker holds both", || status().running == 2);
    // A worker has read it: the client cannot know it has not started, so it is left alone.
    assert!(!ahead.cancel_pending());
    assert!(!ahead.done() && !ahead.cancelled());
    open(&dir, &["l"]);
    assert_eq!(ahead.result(), Ok(49));
    assert!(long.result().is_ok());
}

#[test]
fn shutdown_does_not_wait_for_a_cancelled_task() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // No worker: the cancelled task is never answered.
    let client = Cluster::connect(&redis.url()).unwrap();
    let dir = TempDir::new("cancel-shutdown");
    let task = client.submit(&GATED, (dir.str(), "c".into())).unwrap();
    assert!(task.cancel());
    assert_eq!(client.metrics().pending, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        client.shutdown();
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("shutdown returned without waiting for the cancelled task");
}

#[test]
fn a_cancelled_running_task_is_stopped_by_its_worker() {
    let Some((_redis, _w, client)) = common::with_worker() else {
        return;
    };
    let dir = TempDir::new("cancel-running");
    let task = client.submit(&GATED, (dir.str(), "r".into())).unwrap();
    eventually("the task started", || !started_by(&dir, "r").is_empty());
    assert!(task.cancel());
    assert_eq!(task.result(), Err(TaskError::Cancelled));
    // The gate never opens: the one slot is free again only because the task was killed.
    assert_eq!(client.submit(&SQUARE, 5).unwrap().result(), Ok(25));
    eventually(
        "the worker's Cancelled answer arrived and was dropped",
        || client.metrics().duplicates == 1,
    );
}

#[test]
fn a_task_past_its_deadline_times_out() {
    let Some((redis, _w, client)) = common::with_worker() else {
        return;
    };
    // From the definition (100 ms) ...
    let e = client
        .submit(&SLEEP_CAPPED, 60_000)
        .unwrap()
        .result()
        .unwrap_err();
    assert!(matches!(e, TaskError::TimedOut(_)), "{e:?}");
    // ... or from the client.
    let capped = Cluster::builder(&redis.url())
        .task_timeout(Duration::from_millis(50))
        .connect()
        .unwrap();
    let e = capped.submit(&SLEEP, 60_000).unwrap().result().unwrap_err();
    assert_eq!(e, TaskError::TimedOut(Duration::from_millis(50)));
    assert_eq!(client.submit(&SQUARE, 6).unwrap().result(), Ok(36));
}

#[test]
fn a_stopped_worker_finishes_what_it_holds() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut w = WorkerSpec::new(&redis.url()).spawn();
    wait_workers(&redis, "default", 1);
    let client = Cluster::connect(&redis.url()).unwrap();
    let dir = TempDir::new("stop");
    let task = client.submit(&GATED, (dir.str(), "s".into())).unwrap();
    eventually("the task started", || !started_by(&dir, "s").is_empty());
    w.terminate();
    // Still running: it waits for the gate, and the worker waits for it.
    assert!(!task.done());
    assert_eq!(w.try_exit(), None);
    std::fs::write(dir.path("s.open"), "").unwrap();
    assert_eq!(task.result(), Ok(started_by(&dir, "s")[0]));
    let mut code = None;
    eventually("the worker exits", || {
        code = w.try_exit();
        code.is_some()
    });
    assert_eq!(code, Some(Some(0)));
    assert_eq!(
        redis.int(&["HLEN", "chi:{default}:workers"]),
        0,
        "it left the queue"
    );
}

#[test]
fn a_long_task_does_not_hold_back_short_ones() {
    let Some((_redis, _workers, client)) = common::with_workers(2) else {
        return;
    };
    let dir = TempDir::new("hol");
    let long = client.submit(&GATED, (dir.str(), "l".into())).unwrap();
    eventually("the long task started", || {
        !started_by(&dir, "l").is_empty()
    });
    // Many short tasks after it: all answered while the long one still runs, so none was
    // prefetched by the busy worker.
    let short: Vec<_> = (0..50u64)
        .map(|i| client.submit(&SQUARE, i).unwrap())
        .collect();
    for (i, t) in short.into_iter().enumerate() {
        assert_eq!(t.result(), Ok((i * i) as u64));
    }
    assert!(!long.done());
    std::fs::write(dir.path("l.open"), "").unwrap();
    assert!(long.result().is_ok());
}

#[test]
fn a_prefetching_worker_takes_tasks_beyond_its_free_slots() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let _w = WorkerSpec::new(&redis.url()).prefetch(3).spawn();
    let client = Cluster::connect(&redis.url()).unwrap();
    let dir = TempDir::new("prefetch");
    let long = client.submit(&GATED, (dir.str(), "p".into())).unwrap();
    eventually("the long task started", || {
        !started_by(&dir, "p").is_empty()
    });
    let short: Vec<_> = (0..5u64)
        .map(|i| client.submit(&SQUARE, i).unwrap())
        .collect();
    // One slot busy, three more taken anyway (queued behind the long task), one left waiting.
    let status = || chi_cluster::status(&redis.url(), "default").unwrap();
    eventually("the worker holds 1 + 3 tasks", || status().running == 4);
    assert_eq!(status().depth, 6);
    assert!(short.iter().all(|t| !t.done()));
    std::fs::write(dir.path("p.open"), "").unwrap();
    assert!(long.result().is_ok());
    for (i, t) in short.into_iter().enumerate() {
        assert_eq!(t.result(), Ok((i * i) as u64));
    }
}

#[test]
fn a_prefetching_worker_hands_its_waiting_tasks_to_an_idle_one() {
    hand_back_to_an_idle_worker(WorkerSpec::new, common::NEVER);
}

/// The same, with a heartbeat far longer than the test may take: only the idle signal can
/// make the prefetching worker hand its tasks back in time.
#[test]
fn an_idle_worker_signals_a_prefetching_one_without_waiting_for_its_heartbeat() {
    hand_back_to_an_idle_worker(
        |url| WorkerSpec::new(url).heartbeat_ms(300_000),
        Duration::from_secs(30),
    );
}

/// Worker A (`spec`), one process with three more tasks taken ahead, runs a long task; an
/// idle worker B starts and must get the three within `bound` each.
fn hand_back_to_an_idle_worker(spec: fn(&str) -> WorkerSpec, bound: Duration) {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // Worker A: one process, three more tasks taken ahead, queued behind a long one.
    let a = spec(&redis.url()).prefetch(3).spawn();
    wait_workers(&redis, "default", 1);
    let status = || chi_cluster::status(&redis.url(), "default").unwrap();
    let idle = |st: &chi_cluster::QueueStatus| st.workers.iter().map(|w| w.idle).sum::<u64>();
    eventually("A shows its one process idle", || idle(&status()) == 1);
    let client = Cluster::connect(&redis.url()).unwrap();
    let dir = TempDir::new("idle-peer");
    let long = client.submit(&GATED, (dir.str(), "h".into())).unwrap();
    eventually("the long task started", || {
        !started_by(&dir, "h").is_empty()
    });
    eventually("A busy: no idle process shown", || idle(&status()) == 0);
    let queued: Vec<_> = (0..3)
        .map(|_| client.submit(&WORKER_PID, ()).unwrap())
        .collect();
    eventually("A holds 1 + 3 tasks", || status().running == 4);
    // B comes up idle: A, still running its long task and refreshing its leases (no reclaim),
    // hands it the three that wait, not counted as runs.
    // B with the same settings: its reclaims (lease) must not take A's long task, which A
    // refreshes only at its beats.
    let b = spec(&redis.url()).spawn();
    for t in queued {
        let pid = t.result_timeout(bound).ok();
        assert_eq!(pid, Some(b.pid()), "answered by the idle worker");
    }
    assert!(!long.done());
    std::fs::write(dir.path("h.open"), "").unwrap();
    assert_eq!(long.result(), Ok(a.pid()));
    let m = client.metrics();
    assert_eq!(
        (m.results, m.duplicates, m.retried),
        (4, 0, 0),
        "a handed-back task is not a retry: {m:?}"
    );
    let st = status();
    assert_eq!((st.depth, st.running, st.dead_letters), (0, 0, 0), "{st:?}");
    assert_eq!(started_by(&dir, "h").len(), 1, "the long task ran once");
    // Both go on serving.
    let short: Vec<_> = (0..20u64)
        .map(|i| client.submit(&SQUARE, i).unwrap())
        .collect();
    for (i, t) in short.into_iter().enumerate() {
        assert_eq!(t.result_timeout(common::NEVER).ok(), Some((i * i) as u64));
    }
}

#[test]
fn two_prefetching_workers_both_hand_their_waiting_tasks_to_one_idle_worker() {
    two_prefetchers_hand_back(WorkerSpec::new, common::NEVER);
}

/// The same with heartbeats far longer than the test may take: every prefetching worker hears
/// the idle worker's signals (none is taken by one with nothing to give).
#[test]
fn every_prefetching_worker_hears_an_idle_workers_signal() {
    two_prefetchers_hand_back(
        |url| WorkerSpec::new(url).heartbeat_ms(300_000),
        Duration::from_secs(30),
    );
}

/// Workers A and C (`spec`) each run a long task with three more taken ahead; an idle worker
/// B starts and must get all six, each within `bound`.
fn two_prefetchers_hand_back(spec: fn(&str) -> WorkerSpec, bound: Duration) {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let client = Cluster::connect(&redis.url()).unwrap();
    let dir = TempDir::new("two-prefetchers");
    let status = || chi_cluster::status(&redis.url(), "default").unwrap();
    // A and C: one process each, three tasks taken ahead, queued behind a long one. Each long
    // task is queued before its worker starts, so that worker's first read takes it and it is
    // never idle (an idle C would be handed A's tasks).
    let mut held = Vec::new();
    let mut longs = Vec::new();
    let mut prefetchers = Vec::new();
    for (n, name) in ["a", "c"].into_iter().enumerate() {
        longs.push(client.submit(&GATED, (dir.str(), name.into())).unwrap());
        prefetchers.push(spec(&redis.url()).prefetch(3).spawn());
        eventually("the long task started", || {
            !started_by(&dir, name).is_empty()
        });
        held.extend((0..3).map(|_| client.submit(&WORKER_PID, ()).unwrap()));
        eventually("the worker holds 1 + 3 tasks", || {
            status().running == 4 * (n as u64 + 1)
        });
    }
    assert_eq!(started_by(&dir, "a"), vec![prefetchers[0].pid()]);
    assert_eq!(started_by(&dir, "c"), vec![prefetchers[1].pid()]);
    // B comes up idle: the six waiting tasks all reach it, one at a time, while both long
    // tasks still run; none is run twice or counted as a retry.
    let b = spec(&redis.url()).spawn();
    for t in held {
        assert_eq!(t.result_timeout(bound).ok(), Some(b.pid()));
    }
    assert!(longs.iter().all(|t| !t.done()));
    open(&dir, &["a", "c"]);
    for (t, w) in longs.into_iter().zip(&prefetchers) {
        assert_eq!(t.result(), Ok(w.pid()));
    }
    let m = client.metrics();
    assert_eq!((m.results, m.duplicates, m.retried), (8, 0, 0), "{m:?}");
    let st = status();
    assert_eq!((st.depth, st.running, st.dead_letters), (0, 0, 0), "{st:?}");
}

#[test]
fn results_of_a_client_that_went_away_expire() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let _w = WorkerSpec::new(&redis.url()).spawn();
    let dir = TempDir::new("ttl");
    let client = Cluster::builder(&redis.url())
        .result_ttl(Duration::from_secs(1))
        .connect()
        .unwrap();
    let key = format!("chi:{{default}}:res:{}", client.id());
    let task = client.submit(&GATED, (dir.str(), "t".into())).unwrap();
    eventually("the task started", || !started_by(&dir, "t").is_empty());
    drop(client); // the client is gone: nobody reads or refreshes its stream
    assert!(task.result().is_err());
    std::fs::write(dir.path("t.open"), "").unwrap();
    let expired_before = redis.info_int("stats", "expired_keys");
    eventually("the worker answered the gone client", || {
        redis.int(&["XLEN", "chi:{default}:tasks"]) == 0
    });
    eventually("the result stream expired", || {
        redis.int(&["EXISTS", &key]) == 0
            && redis.info_int("stats", "expired_keys") > expired_before
    });
}

#[test]
fn redis_memory_returns_to_baseline_after_a_client_dies() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let _w = WorkerSpec::new(&redis.url()).threads().slots(16).spawn();
    wait_workers(&redis, "default", 1);
    let client = Cluster::builder(&redis.url())
        .result_ttl(Duration::from_secs(1))
        .connect()
        .unwrap();
    assert_eq!(client.submit(&SQUARE, 2).unwrap().result(), Ok(4));
    let baseline = redis.info_int("memory", "used_memory");
    let n = 20_000u64;
    let sum: u64 = client.map(&SQUARE, 0..n, 1000).map(Result::unwrap).sum();
    assert_eq!(sum, (0..n).map(|i| i * i).sum::<u64>());
    // The client dies with results still on its stream: a few tasks answered after it left.
    let late: Vec<_> = (0..100u64)
        .map(|i| client.submit(&SQUARE, i).unwrap())
        .collect();
    let key = format!("chi:{{default}}:res:{}", client.id());
    drop(client);
    drop(late);
    eventually("every task answered", || {
        redis.int(&["XLEN", "chi:{default}:tasks"]) == 0
    });
    eventually("the dead client's results expired", || {
        redis.int(&["EXISTS", &key]) == 0
    });
    let after = redis.info_int("memory", "used_memory");
    // Nothing per task is left: 20,100 tasks leaking even 30 bytes each would exceed this.
    assert!(
        after < baseline + 600 * 1024,
        "used_memory {after} after, {baseline} before"
    );
}

#[test]
fn a_panicking_task_is_retried_only_when_its_definition_asks() {
    let Some((redis, _w, client)) = common::with_worker() else {
        return;
    };
    let dir = TempDir::new("panic");
    let arg = |name: &str, fail| (dir.str(), name.to_owned(), fail);
    // Without the opt-in: one run, and the panic is the handle's error.
    let e = client.submit(&FLAKY, arg("plain", 5)).unwrap().result();
    assert_eq!(e.unwrap_err().panic_message(), Some("flaky run 1"));
    assert_eq!(runs(&dir.str(), "plain"), 1);
    // With it: a passing fault is run again until it succeeds ...
    let ok = client.submit(&FLAKY_RETRIED, arg("passing", 1)).unwrap();
    assert_eq!(ok.result(), Ok(2));
    // ... and a lasting one at most max_attempts (3) times; the last panic is the error.
    let e = client
        .submit(&FLAKY_RETRIED, arg("lasting", 99))
        .unwrap()
        .result();
    assert_eq!(e.unwrap_err().panic_message(), Some("flaky run 3"));
    assert_eq!(runs(&dir.str(), "lasting"), 3);
    assert_eq!(client.metrics().retried, 2, "answers of runs 2 and 3");
    // The client's max_attempts bounds the runs.
    let once = Cluster::builder(&redis.url())
        .max_attempts(1)
        .connect()
        .unwrap();
    let e = once
        .submit(&FLAKY_RETRIED, arg("bounded", 99))
        .unwrap()
        .result();
    assert_eq!(e.unwrap_err().panic_message(), Some("flaky run 1"));
    assert_eq!(runs(&dir.str(), "bounded"), 1);
    // Every answered task left the stream: no run is still to come.
    assert_eq!(redis.int(&["XLEN", "chi:{default}:tasks"]), 0);
}

#[test]
fn a_stopping_worker_hands_back_what_it_has_not_started() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // Worker A: one process, three more tasks taken ahead (queued behind a long one).
    let mut a = WorkerSpec::new(&redis.url()).prefetch(3).spawn();
    wait_workers(&redis, "default", 1);
    let client = Cluster::connect(&redis.url()).unwrap();
    let dir = TempDir::new("hand-back");
    let long = client.submit(&GATED, (dir.str(), "g".into())).unwrap();
    eventually("the long task started", || {
        !started_by(&dir, "g").is_empty()
    });
    let queued: Vec<_> = (0..3)
        .map(|_| client.submit(&WORKER_PID, ()).unwrap())
        .collect();
    let status = || chi_cluster::status(&redis.url(), "default").unwrap();
    eventually("A holds 1 + 3 tasks", || status().running == 4);
    let b = WorkerSpec::new(&redis.url()).spawn();
    wait_workers(&redis, "default", 2);
    a.terminate();
    // A lives on (its long task runs) and refreshes its leases, so no reclaim happens: the
    // queued tasks reach B only because A handed them back.
    for t in queued {
        let pid = t.result_timeout(common::NEVER).ok();
        assert_eq!(pid, Some(b.pid()), "answered by the other worker");
    }
    assert!(!long.done());
    assert_eq!(a.try_exit(), None);
    std::fs::write(dir.path("g.open"), "").unwrap();
    assert_eq!(long.result(), Ok(a.pid()), "A finished what ran");
    let mut code = None;
    eventually("A exits", || {
        code = a.try_exit();
        code.is_some()
    });
    assert_eq!(code, Some(Some(0)));
    let m = client.metrics();
    assert_eq!((m.results, m.duplicates, m.retried), (4, 0, 0), "{m:?}");
    let st = status();
    assert_eq!((st.depth, st.running, st.dead_letters), (0, 0, 0), "{st:?}");
    assert_eq!(started_by(&dir, "g").len(), 1, "the long task ran once");
}

#[test]
fn a_worker_stopped_past_its_grace_hands_back_its_running_task() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut a = WorkerSpec::new(&redis.url()).stop_grace_ms(100).spawn();
    wait_workers(&redis, "default", 1);
    let client = Cluster::connect(&redis.url()).unwrap();
    let dir = TempDir::new("grace");
    let task = client.submit(&GATED, (dir.str(), "g".into())).unwrap();
    eventually("the task started", || !started_by(&dir, "g").is_empty());
    let b = WorkerSpec::new(&redis.url()).spawn();
    wait_workers(&redis, "default", 2);
    a.terminate();
    // The gate stays shut: A's grace ends, it stops the task, hands it back and leaves.
    let mut code = None;
    eventually("A exits", || {
        code = a.try_exit();
        code.is_some()
    });
    assert_eq!(code, Some(Some(0)));
    eventually("B started the task", || started_by(&dir, "g").len() == 2);
    assert_eq!(started_by(&dir, "g")[1], b.pid());
    std::fs::write(dir.path("g.open"), "").unwrap();
    assert_eq!(task.result(), Ok(b.pid()));
    let m = client.metrics();
    assert_eq!(m.retried, 1, "B's answer is attempt 2");
    assert_eq!(m.duplicates, 0, "A's stopped run answered nothing");
}

#[test]
fn every_kind_of_outcome_gives_its_slot_back_once() {
    // Two slots. A slot is released when its run ends (before the answer is sent) or, for a
    // task answered without a run, once the answer is sent: after every kind of outcome the
    // worker must still run exactly two tasks at once, never one (a lost slot) nor three.
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let _w = WorkerSpec::new(&redis.url()).slots(2).spawn();
    let client = Cluster::connect(&redis.url()).unwrap();
    let dir = TempDir::new("slots");
    for round in 0..3 {
        let ok: Vec<_> = (0..20u64)
            .map(|i| client.submit(&SQUARE, i).unwrap())
            .collect();
        let panicked = client.submit(&PANICS, 1).unwrap();
        let unknown = client.submit(&UNKNOWN, 1).unwrap();
        let wrong = client.submit(&SQUARE_WRONG_TYPES, "x".into()).unwrap();
        let timed_out = client.submit(&SLEEP_CAPPED, 60_000).unwrap();
        let crashed = client.submit(&ABORT, 1).unwrap();
        let running = client
            .submit(&GATED, (dir.str(), format!("c{round}")))
            .unwrap();
        eventually("the task to cancel started", || {
            !started_by(&dir, &format!("c{round}")).is_empty()
        });
        assert!(running.cancel());
        for (i, t) in ok.into_iter().enumerate() {
            assert_eq!(t.result(), Ok((i * i) as u64));
        }
        assert!(matches!(panicked.result(), Err(TaskError::Panicked { .. })));
        assert!(matches!(unknown.result(), Err(TaskError::PoolFailed(_))));
        assert!(matches!(wrong.result(), Err(TaskError::PoolFailed(_))));
        assert!(matches!(timed_out.result(), Err(TaskError::TimedOut(_))));
        assert_eq!(
            crashed.result(),
            Err(TaskError::WorkerDied(ExitReason::Signal(6)))
        );
        assert_eq!(running.result(), Err(TaskError::Cancelled));
    }
    // The handle of a cancelled task ends at once; the worker's own answer comes after.
    eventually("the worker answered the three cancelled tasks", || {
        client.metrics().duplicates == 3
    });
    // Both slots free: two gated tasks start together (one lost slot would leave the second
    // waiting forever behind the first).
    let gated: Vec<_> = ["a", "b"]
        .iter()
        .map(|n| client.submit(&GATED, (dir.str(), (*n).into())).unwrap())
        .collect();
    eventually("both gated tasks started", || {
        !started_by(&dir, "a").is_empty() && !started_by(&dir, "b").is_empty()
    });
    // No third slot: with both gates shut, a short task waits in the queue, untaken.
    let short = client.submit(&SQUARE, 7).unwrap();
    let status = || chi_cluster::status(&redis.url(), "default").unwrap();
    assert_eq!(status().running, 2);
    assert!(!short.done());
    open(&dir, &["a", "b"]);
    for t in gated {
        assert!(t.result().is_ok());
    }
    assert_eq!(short.result(), Ok(49));
}

#[test]
fn a_worker_that_reclaims_its_own_running_task_neither_runs_it_twice_nor_loses_a_slot() {
    // When a worker's leases lapse while its task still runs (Redis away longer than the
    // lease), its own reclaim may hand the entry back to it. The run it holds answers the
    // task; the reclaimed copy must not run again nor take (and keep) a second slot.
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let _w = WorkerSpec::new(&redis.url()).slots(2).spawn();
    let client = Cluster::connect(&redis.url()).unwrap();
    let dir = TempDir::new("self-reclaim");
    let task = client.submit(&GATED, (dir.str(), "t".into())).unwrap();
    eventually("the task started", || !started_by(&dir, "t").is_empty());
    let mut con = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let tasks = "chi:{default}:tasks";
    // [[entry id, consumer, idle ms, deliveries]]
    let pending = |con: &mut redis::Connection| -> Vec<(String, String, u64, u64)> {
        redis::cmd("XPENDING")
            .arg(tasks)
            .arg("workers")
            .arg("-")
            .arg("+")
            .arg(10)
            .query(con)
            .unwrap()
    };
    let (entry, holder, _, deliveries) = pending(&mut con).remove(0);
    assert_eq!(deliveries, 1);
    // Make the entry look abandoned (idle far past the 2 s lease) until the worker's own
    // reclaim takes it again, which counts a second delivery.
    eventually("the worker reclaimed its own entry", || {
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(tasks)
            .arg("workers")
            .arg(&holder)
            .arg(0)
            .arg(&entry)
            .arg("IDLE")
            .arg(3_600_000)
            .arg("JUSTID")
            .query(&mut con)
            .unwrap();
        pending(&mut con).first().is_some_and(|p| p.3 >= 2)
    });
    // Still one run, and the second slot is free: another gated task starts beside it.
    let other = client.submit(&GATED, (dir.str(), "u".into())).unwrap();
    eventually("a second task started beside it", || {
        !started_by(&dir, "u").is_empty()
    });
    assert_eq!(started_by(&dir, "t").len(), 1, "the task ran twice");
    open(&dir, &["t", "u"]);
    assert!(task.result().is_ok());
    assert!(other.result().is_ok());
    // Both slots came back: two more gated tasks run at once.
    let pair: Vec<_> = ["v", "w"]
        .iter()
        .map(|n| client.submit(&GATED, (dir.str(), (*n).into())).unwrap())
        .collect();
    eventually("both slots free again", || {
        !started_by(&dir, "v").is_empty() && !started_by(&dir, "w").is_empty()
    });
    open(&dir, &["v", "w"]);
    for t in pair {
        assert!(t.result().is_ok());
    }
    assert_eq!(started_by(&dir, "t").len(), 1, "the task ran twice");
}

/// The take-back script of `cancel_pending`, run directly against Redis: it takes back an
/// unread entry of its own task and marks it; a retry whose first answer was lost finds the
/// entry gone but marked and answers yes again; it refuses (0) an entry a worker has read,
/// another task's entry, and an entry gone without its task's mark; and it works before the
/// consumer group exists (nobody has read anything).
#[test]
fn take_back_script_answers_a_retry_and_refuses_read_or_foreign_entries() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let con = &mut redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let (tasks, cancel, group) = ("chi:{t}:tasks", "chi:{t}:cancel", chi_cluster::keys::GROUP);
    let script = redis::Script::new(chi_cluster::__private::TAKE_BACK);
    let take_back = |con: &mut redis::Connection, entry: &str, task: &str| -> i64 {
        script
            .key(tasks)
            .key(cancel)
            .arg(entry)
            .arg(group)
            .arg(task)
            .arg(1_000)
            .invoke(con)
            .unwrap()
    };
    let add = |con: &mut redis::Connection, task: &str| -> String {
        redis::cmd("XADD")
            .arg(tasks)
            .arg("*")
            .arg("id")
            .arg(task)
            .query(con)
            .unwrap()
    };

    // No group yet: nobody read it, so it is taken back and marked.
    let e1 = add(con, "1");
    assert_eq!(take_back(con, &e1, "1"), 1);
    assert_eq!(redis.int(&["XLEN", tasks]), 0);
    assert_eq!(redis.int(&["ZCARD", cancel]), 1);
    // The retry of a try whose answer was lost: gone, but marked (the stream is empty, so no
    // entry can be deleted twice).
    assert_eq!(take_back(con, &e1, "1"), 1);
    assert_eq!(redis.int(&["ZCARD", cancel]), 1);
    // Gone and never marked for this task: it may have run and been answered.
    assert_eq!(take_back(con, &e1, "2"), 0);

    // A worker read it: it may have started, so it stays.
    redis.command(&["XGROUP", "CREATE", tasks, group, "0"]);
    let e3 = add(con, "3");
    redis.command(&[
        "XREADGROUP",
        "GROUP",
        group,
        "w1",
        "COUNT",
        "1",
        "STREAMS",
        tasks,
        ">",
    ]);
    assert_eq!(take_back(con, &e3, "3"), 0);
    assert_eq!(redis.int(&["XLEN", tasks]), 1);

    // Another task's entry (ids restart on a fresh stream): it stays.
    let e4 = add(con, "4");
    assert_eq!(take_back(con, &e4, "5"), 0);
    assert_eq!(redis.int(&["XLEN", tasks]), 2);
    // Its own task's, unread, with the group there: taken back.
    assert_eq!(take_back(con, &e4, "4"), 1);
    assert_eq!(redis.int(&["XLEN", tasks]), 1);
    assert_eq!(redis.int(&["ZCARD", cancel]), 2);
}
