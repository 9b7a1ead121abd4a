//! chi-cluster when the broker fails or is a Redis Cluster: a restart with AOF loses nothing
//! acknowledged; without persistence every handle ends with a clear error; submits during an
//! outage fail with `Unavailable`; three-node Redis Cluster with hash-tagged queues.

mod common;

use chi::{ResultTimeoutError, TaskError};
use chi_cluster::Cluster;
use common::gate::Gate;
use common::tasks::*;
use common::{NEVER, Opts, RedisCluster, RedisServer, WorkerSpec};
use std::time::Duration;

chi::process_pool_test_entry!();

#[test]
fn __cluster_worker_entry() {
    common::worker_main();
}

/// A Redis with AOF on (fsync at every write) behind a gate (so that a restart keeps the
/// address), and a client connected through the gate; `None` without `redis-server`.
fn with_aof() -> Option<(RedisServer, Gate, Cluster)> {
    let opts = Opts {
        aof: true,
        ..Opts::default()
    };
    let redis = RedisServer::start_with(opts)?;
    let gate = Gate::new(redis.port);
    let client = Cluster::connect(&gate.url()).unwrap();
    Some((redis, gate, client))
}

#[test]
fn with_aof_a_broker_restart_loses_nothing() {
    let Some((mut redis, gate, client)) = with_aof() else {
        return;
    };
    let tasks: Vec<_> = (0..100u64)
        .map(|i| client.submit(&SQUARE, i).unwrap())
        .collect();
    // Half are answered before the crash, half after.
    let mut w = WorkerSpec::new(&gate.url()).threads().spawn();
    for (i, t) in tasks.iter().enumerate().take(50) {
        t.wait();
        assert_eq!(t.error(), None, "task {i}");
    }
    w.kill();
    gate.down();
    redis.restart(); // SIGKILL: only what the AOF holds survives
    gate.to(redis.port);
    let _w = WorkerSpec::new(&gate.url()).threads().spawn();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(
            t.result_timeout(NEVER).ok(),
            Some((i * i) as u64),
            "task {i}"
        );
    }
    assert_eq!(client.metrics().lost, 0);
    assert_eq!(client.submit(&SQUARE, 11).unwrap().result(), Ok(121));
}

/// A `cancel_pending` whose take-back ran in Redis but whose answer never came back leaves
/// the task's entry deleted and its id marked cancelled. The reader's check after a restart
/// must then end the handle with `Cancelled`, not "lost" (and never leave it waiting). The
/// lost answer is simulated: the entry is deleted and the mark written by hand.
#[test]
fn a_task_taken_back_without_an_answer_ends_cancelled_not_lost() {
    let Some((mut redis, gate, client)) = with_aof() else {
        return;
    };
    let task = client.submit(&SQUARE, 3).unwrap();
    let kept = client.submit(&SQUARE, 4).unwrap();
    // What the take-back script does to the first task: its entry gone (the oldest of the
    // two), its id marked.
    assert_eq!(
        redis.int(&["XTRIM", "chi:{default}:tasks", "MAXLEN", "1"]),
        1
    );
    let id = format!("{}-1", client.id());
    assert_eq!(redis.int(&["ZADD", "chi:{default}:cancel", "1", &id]), 1);
    gate.down();
    redis.restart(); // a new run_id: the reader checks the tasks it waits for
    gate.to(redis.port);
    let r = task.result_timeout(NEVER);
    assert!(
        matches!(r, Err(ResultTimeoutError::Failed(TaskError::Cancelled))),
        "{r:?}"
    );
    let _w = WorkerSpec::new(&gate.url()).threads().spawn();
    assert_eq!(kept.result_timeout(NEVER).ok(), Some(16));
    assert_eq!(client.metrics().lost, 0);
}

/// Every handle of a task that Redis lost ends with the lost-task error, within [`NEVER`]
/// (bounded: a hang would fail here, not block the run).
#[track_caller]
fn assert_all_lost(tasks: Vec<chi::Task<u64>>) {
    for (i, t) in tasks.into_iter().enumerate() {
        match t.result_timeout(NEVER) {
            Err(ResultTimeoutError::Failed(TaskError::PoolFailed(msg))) => {
                assert!(msg.to_string().contains("Redis lost task"), "{msg}")
            }
            Err(ResultTimeoutError::Timeout(_)) => panic!("task {i}: its handle hangs"),
            other => panic!("task {i}: expected a lost-task error, got {other:?}"),
        }
    }
}

#[test]
fn without_persistence_lost_tasks_fail_clearly_and_submits_say_unavailable() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let gate = Gate::new(redis.port);
    let client = Cluster::builder(&gate.url())
        .broker_timeout(Duration::from_millis(300))
        .connect()
        .unwrap();
    let tasks: Vec<_> = (0..20u64)
        .map(|i| client.submit(&SQUARE, i).unwrap())
        .collect();
    gate.down();
    redis.kill();
    let e = client.submit(&SQUARE, 99).unwrap_err();
    assert!(e.is_unavailable(), "{e:?}");
    assert_eq!(e.into_inner(), 99);
    redis.restart();
    gate.to(redis.port);
    assert_all_lost(tasks);
    assert_eq!(client.metrics().lost, 20);
    // The queue works again on the fresh broker.
    let _w = WorkerSpec::new(&redis.url()).spawn();
    assert_eq!(client.submit(&SQUARE, 12).unwrap().result(), Ok(144));
}

/// The reader's first connection can come after a restart (a loaded machine starts its thread
/// late): it never saw the broker the tasks went to, yet must find them lost. The gate keeps
/// the reader off Redis until the restart is over.
#[test]
fn a_reader_that_first_connects_after_a_restart_still_finds_lost_tasks() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    // The client's first connection (its submit link) goes through; the reader's wait.
    let gate = Gate::first_only(redis.port);
    let client = Cluster::builder(&gate.url())
        .broker_timeout(Duration::from_millis(300))
        .connect()
        .unwrap();
    let tasks: Vec<_> = (0..5u64)
        .map(|i| client.submit(&SQUARE, i).unwrap())
        .collect();
    gate.down();
    redis.restart();
    gate.to(redis.port);
    assert_all_lost(tasks);
    assert_eq!(client.metrics().lost, 5);
    let _w = WorkerSpec::new(&redis.url()).spawn();
    assert_eq!(client.submit(&SQUARE, 3).unwrap().result(), Ok(9));
}

#[test]
fn a_three_node_redis_cluster_runs_hash_tagged_queues() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let url = cluster.url();
    let queues = ["alpha", "beta", "gamma", "delta"];
    let slots: std::collections::HashSet<i64> = queues
        .iter()
        .map(|q| cluster.nodes[0].int(&["CLUSTER", "KEYSLOT", &format!("chi:{{{q}}}:tasks")]))
        .collect();
    assert_eq!(
        slots.len(),
        queues.len(),
        "the queues live on different slots"
    );
    let _workers: Vec<_> = queues
        .iter()
        .map(|q| WorkerSpec::new(&url).threads().slots(2).queue(q).spawn())
        .collect();
    for q in queues {
        let client = Cluster::builder(&url).queue(q).connect().unwrap();
        assert_eq!(client.submit(&SQUARE, 8).unwrap().result(), Ok(64));
        let got: Vec<u64> = client
            .map(&SQUARE, 0..500u64, 64)
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, (0..500u64).map(|i| i * i).collect::<Vec<_>>());
        let e = client.submit(&UNKNOWN, 1).unwrap().result().unwrap_err();
        assert!(matches!(e, TaskError::PoolFailed(_)), "{e:?}");
        let status = chi_cluster::status(&url, q).unwrap();
        assert_eq!(status.workers.len(), 1, "{status:?}");
        client.shutdown();
    }
}
