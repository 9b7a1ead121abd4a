//! chi-cluster against a real Redis, with workers as separate processes: results, the `Task`
//! API, `map`, refusals (unknown name, other types, size), bounded queues, two clients.

mod common;

use chi::TaskError;
use chi_cluster::{Cluster, SubmitError};
use common::tasks::*;
use common::{RedisServer, WorkerSpec, eventually};
use std::collections::HashSet;
use std::time::Duration;

chi::process_pool_test_entry!();

#[test]
fn __cluster_worker_entry() {
    common::worker_main();
}

#[test]
fn results_come_from_two_workers() {
    let Some((_redis, _workers, client)) = common::with_workers(2) else {
        return;
    };
    assert_eq!(client.submit(&SQUARE, 12).unwrap().result(), Ok(144));
    // Hold one worker on a gated task: the other must answer the next one.
    let dir = common::TempDir::new("two");
    let held = client.submit(&GATED, (dir.str(), "a".to_owned())).unwrap();
    eventually("the gated task started", || dir.path("a.started").exists());
    let other = client.submit(&WORKER_PID, ()).unwrap().result().unwrap();
    std::fs::write(dir.path("a.open"), "").unwrap();
    let first = held.result().unwrap();
    assert_ne!(first, other, "two different workers answered");
    let pids: HashSet<u32> = [first, other].into();
    assert_eq!(pids.len(), 2);
    client.shutdown();
}

#[test]
fn the_handle_is_chis_task() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let _w = WorkerSpec::new(&redis.url()).threads().slots(2).spawn();
    let client = Cluster::connect(&redis.url()).unwrap();
    // add_done_callback
    let (tx, rx) = std::sync::mpsc::channel();
    let t = client.submit(&SQUARE, 3).unwrap();
    t.add_done_callback(move |r| tx.send(r.clone()).unwrap());
    assert_eq!(rx.recv_timeout(common::NEVER).unwrap(), Ok(9));
    assert!(t.done());
    assert_eq!(t.result_timeout(Duration::from_secs(60)).ok(), Some(9));
    // as_completed and wait
    let tasks: Vec<_> = (0..10u64)
        .map(|i| client.submit(&SQUARE, i).unwrap())
        .collect();
    let mut got: Vec<u64> = chi::as_completed(tasks)
        .map(|t| t.result().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..10u64).map(|i| i * i).collect::<Vec<_>>());
    let tasks: Vec<_> = (0..4u64)
        .map(|i| client.submit(&SQUARE, i).unwrap())
        .collect();
    let (done, not_done) = chi::wait(tasks, chi::ReturnWhen::AllCompleted, None);
    assert_eq!((done.len(), not_done.len()), (4, 0));
    // .await
    let t = client.submit(&SQUARE, 5).unwrap();
    assert_eq!(futures::executor::block_on(t), Ok(25));
    // a panic is the task's error, not a retry
    let e = client.submit(&PANICS, 1).unwrap().result().unwrap_err();
    assert_eq!(e.panic_message(), Some("a task that panics"));
    assert_eq!(client.metrics().retried, 0);
    client.shutdown();
}

#[test]
fn map_is_ordered_and_lazy() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let _w1 = WorkerSpec::new(&redis.url()).threads().slots(16).spawn();
    let _w2 = WorkerSpec::new(&redis.url()).threads().slots(16).spawn();
    let client = Cluster::connect(&redis.url()).unwrap();
    let n = 100_000u64;
    let mut expect = 0u64;
    for (i, r) in client.map(&SQUARE, 0..n, 1000).enumerate() {
        assert_eq!(r, Ok((i as u64) * (i as u64)));
        expect += 1;
    }
    assert_eq!(expect, n);
    // Lazy: an endless input is fine as long as the consumer stops.
    let first: Vec<u64> = client
        .map(&SQUARE, 0u64.., 8)
        .take(5)
        .map(Result::unwrap)
        .collect();
    assert_eq!(first, vec![0, 1, 4, 9, 16]);
    assert!(client.metrics().submitted <= n + 5 + 8);
    let results = format!("chi:{{default}}:res:{}", client.id());
    client.shutdown(); // waits for the look-ahead tasks nobody read
    // Nothing per task stays in Redis once it is answered and the client is gone.
    assert_eq!(redis.int(&["XLEN", "chi:{default}:tasks"]), 0);
    assert_eq!(redis.int(&["EXISTS", &results]), 0);
    let status = chi_cluster::status(&redis.url(), "default").unwrap();
    assert_eq!((status.depth, status.running), (0, 0));
}

#[test]
fn an_unknown_name_or_other_types_get_a_clear_error() {
    let Some((_redis, _w, client)) = common::with_worker() else {
        return;
    };
    let e = client.submit(&UNKNOWN, 1).unwrap().result().unwrap_err();
    let TaskError::PoolFailed(msg) = e else {
        panic!("{e:?}")
    };
    assert!(msg.to_string().contains("no task named `nope`"), "{msg}");
    let e = client
        .submit(&SQUARE_WRONG_TYPES, "x".into())
        .unwrap()
        .result()
        .unwrap_err();
    let TaskError::PoolFailed(msg) = e else {
        panic!("{e:?}")
    };
    assert!(msg.to_string().contains("signature"), "{msg}");
    // The worker still serves.
    assert_eq!(client.submit(&SQUARE, 7).unwrap().result(), Ok(49));
}

#[test]
fn sixteen_mib_each_way_and_the_size_limit() {
    let Some((redis, _w, client)) = common::with_worker() else {
        return;
    };
    let big: Vec<u8> = (0..16u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut expect = big.clone();
    expect.reverse();
    assert_eq!(client.submit(&REVERSE, big).unwrap().result(), Ok(expect));
    let small = Cluster::builder(&redis.url())
        .max_payload(1024)
        .connect()
        .unwrap();
    let e = small.submit(&REVERSE, vec![0u8; 2048]).unwrap_err();
    assert!(matches!(e, SubmitError::TooLarge { size, limit: 1024, .. } if size > 2048));
    assert_eq!(e.into_inner().len(), 2048, "the argument is handed back");
}

#[test]
fn a_bounded_queue_blocks_or_says_full() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let client = Cluster::builder(&redis.url())
        .queue_bound(2)
        .connect()
        .unwrap();
    let a = client.submit(&SQUARE, 1).unwrap();
    let b = client.try_submit(&SQUARE, 2).unwrap();
    let e = client.try_submit(&SQUARE, 3).unwrap_err();
    assert!(e.is_full());
    assert_eq!(e.into_inner(), 3);
    let e = client
        .submit_timeout(&SQUARE, 4, Duration::from_millis(20))
        .unwrap_err();
    assert!(matches!(e, SubmitError::Timeout(4)));
    // A blocking submit gets in once a worker drains the queue.
    let c = std::thread::scope(|s| {
        let blocked = s.spawn(|| client.submit(&SQUARE, 5).unwrap());
        let _w = WorkerSpec::new(&redis.url()).spawn();
        let c = blocked.join().unwrap();
        assert_eq!(c.result(), Ok(25));
        (a.result(), b.result())
    });
    assert_eq!(c, (Ok(1), Ok(4)));
}

#[test]
fn two_clients_share_workers() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let _w1 = WorkerSpec::new(&redis.url()).threads().slots(2).spawn();
    let _w2 = WorkerSpec::new(&redis.url()).slots(2).spawn();
    let c1 = Cluster::connect(&redis.url()).unwrap();
    let c2 = Cluster::connect(&redis.url()).unwrap();
    assert_ne!(c1.id(), c2.id());
    let t1: Vec<_> = (0..50u64).map(|i| c1.submit(&SQUARE, i).unwrap()).collect();
    let t2: Vec<_> = (0..50u64)
        .map(|i| c2.submit(&SQUARE, i + 100).unwrap())
        .collect();
    for (i, t) in t1.into_iter().enumerate() {
        assert_eq!(t.result(), Ok((i * i) as u64));
    }
    for (i, t) in t2.into_iter().enumerate() {
        let x = i as u64 + 100;
        assert_eq!(t.result(), Ok(x * x));
    }
    assert_eq!(c1.metrics().duplicates + c2.metrics().duplicates, 0);
}

#[test]
fn the_result_stream_stays_short_while_the_client_reads() {
    let Some((redis, _w, client)) = common::with_worker() else {
        return;
    };
    let key = format!("chi:{{default}}:res:{}", client.id());
    let tasks: Vec<_> = (0..2_000u64)
        .map(|i| client.submit(&SQUARE, i).unwrap())
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.result(), Ok((i * i) as u64));
    }
    // Every result was read; after each read the reader trims up to the last one it read
    // (kept: XTRIM MINID keeps that id).
    eventually("the read results were trimmed", || {
        redis.int(&["XLEN", &key]) <= 1
    });
    // And when the client shuts down, its stream goes.
    client.shutdown();
    eventually("the last result was trimmed", || {
        redis.int(&["XLEN", &key]) == 0
    });
}
