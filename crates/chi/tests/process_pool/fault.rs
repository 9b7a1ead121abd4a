//! The fault matrix (cases 1-11): each way a task or worker fails gives that task one exact
//! error, and the pool goes on.

use super::*;

/// Case 1: The argument does not encode in the parent: Codec at once, nothing sent.
#[test]
fn fault_argument_encode_fails_in_parent() {
    let pool = pool(1);
    assert_serves(&pool);
    let sent = pool.metrics().messages;
    let err = get(pool.submit(takes_unencodable, Unencodable).unwrap()).unwrap_err();
    match &err {
        TaskError::Codec(m) => assert!(
            m.to_string().starts_with("the argument did not encode"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.metrics().messages, sent, "nothing was sent");
    assert_serves(&pool);
}

/// Case 2: The argument does not decode in the worker: Codec for that task only.
#[test]
fn fault_argument_decode_fails_in_worker() {
    let pool = pool(1);
    let before = worker_pid(&pool);
    let err = get(pool.submit(takes_undecodable, Undecodable).unwrap()).unwrap_err();
    match &err {
        TaskError::Codec(m) => assert!(
            m.to_string()
                .starts_with("the argument did not decode in the worker"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    assert_serves(&pool);
    assert_eq!(worker_pid(&pool), before, "the worker survived");
}

/// Case 3: The task panics: Panicked with the message; the worker survives.
#[test]
fn fault_task_panics() {
    let pool = pool(1);
    let before = worker_pid(&pool);
    assert_eq!(
        get(pool.submit(panics, 7).unwrap()),
        Err(TaskError::panicked("boom 7"))
    );
    assert_serves(&pool);
    assert_eq!(worker_pid(&pool), before, "the worker survived");
}

/// Case 4: The task calls `exit(3)`: WorkerDied with code 3; the worker is replaced.
#[test]
fn fault_task_exits() {
    let pool = pool(1);
    let before = worker_pid(&pool);
    assert_eq!(
        get(pool.submit(exits, 3).unwrap()),
        Err(TaskError::WorkerDied(ExitReason::Code(3)))
    );
    assert_serves(&pool);
    assert_ne!(worker_pid(&pool), before, "the worker was replaced");
}

/// Case 5a: The task aborts: WorkerDied naming SIGABRT.
#[test]
fn fault_task_aborts() {
    let pool = pool(1);
    let err = get(pool.submit(aborts, ()).unwrap()).unwrap_err();
    assert_eq!(err, TaskError::WorkerDied(ExitReason::Signal(6)));
    assert!(err.to_string().contains("SIGABRT"), "{err}");
    assert_serves(&pool);
}

/// Case 5b: The task gets SIGSEGV: WorkerDied naming SIGSEGV.
#[test]
fn fault_task_segfaults() {
    let pool = pool(1);
    let err = get(pool.submit(segfaults, ()).unwrap()).unwrap_err();
    assert_eq!(err, TaskError::WorkerDied(ExitReason::Signal(11)));
    assert!(err.to_string().contains("SIGSEGV"), "{err}");
    assert_serves(&pool);
}

/// Case 6a: The result does not encode in the worker: Codec.
#[test]
fn fault_result_encode_fails_in_worker() {
    let pool = pool(1);
    let before = worker_pid(&pool);
    let err = get(pool.submit(returns_unencodable, ()).unwrap()).unwrap_err();
    assert!(matches!(err, TaskError::Codec(_)), "{err:?}");
    assert_serves(&pool);
    assert_eq!(worker_pid(&pool), before);
}

/// Case 6b: The result does not decode in the parent: Codec.
#[test]
fn fault_result_decode_fails_in_parent() {
    let pool = pool(1);
    let err = get(pool.submit(returns_undecodable, ()).unwrap()).unwrap_err();
    match &err {
        TaskError::Codec(m) => assert!(
            m.to_string()
                .starts_with("the result did not decode in the pool"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    assert_serves(&pool);
}

/// Case 7a: An idle worker is SIGKILLed from outside (the OOM killer's way): it is replaced and
/// the next task is fine.
#[test]
fn fault_idle_worker_killed_from_outside() {
    let pool = pool(1);
    let victim = worker_pid(&pool);
    proc::kill(victim, "KILL");
    poll_until("a replacement worker", || {
        let pids = pool.worker_pids();
        !pids.is_empty() && !pids.contains(&victim)
    });
    assert_serves(&pool);
    assert_ne!(worker_pid(&pool), victim);
}

/// Case 7b: A busy worker is SIGKILLed: its task gets WorkerDied(SIGKILL).
#[test]
fn fault_busy_worker_killed_from_outside() {
    let pool = pool(1);
    let h = Holder::new();
    let t = pool.submit(hold, h.arg()).unwrap();
    let victim = h.wait_started();
    proc::kill(victim, "KILL");
    assert_eq!(get(t), Err(TaskError::WorkerDied(ExitReason::Signal(9))));
    h.gone();
    assert_serves(&pool);
}

/// Case 8a: A 16 MiB argument and a 16 MiB result cross intact.
#[test]
fn fault_big_argument_and_result_round_trip() {
    let pool = pool(1);
    let big = pattern(16 << 20, 3);
    let mut want = big.clone();
    want.0.reverse();
    assert_eq!(get(pool.submit(reverse, big).unwrap()), Ok(want));
    let made = get(pool.submit(make_blob, 16 << 20).unwrap()).unwrap();
    assert_eq!(made, pattern(16 << 20, 7));
    assert_serves(&pool);
}

/// Case 8b: A worker that crashes in the middle of writing a big result fails only that task.
#[test]
fn fault_crash_while_writing_big_result() {
    let pool = pool(2);
    let others: Vec<_> = (0..8u64).map(|i| pool.submit(square, i).unwrap()).collect();
    let err = get(pool.submit(dies_mid_result, ()).unwrap()).unwrap_err();
    assert_eq!(err, TaskError::WorkerDied(ExitReason::Signal(6)));
    for (i, t) in others.into_iter().enumerate() {
        assert_eq!(get(t), Ok((i * i) as u64));
    }
    assert_serves(&pool);
}

/// A message over the size limit fails with a Codec error that says so, both ways.
#[test]
fn fault_message_over_size_limit() {
    let pool = ProcessPool::builder()
        .max_workers(1)
        .max_message_size(64 << 10)
        .build()
        .unwrap();
    let err = get(pool.submit(reverse, pattern(100 << 10, 1)).unwrap()).unwrap_err();
    match &err {
        TaskError::Codec(m) => assert!(
            m.to_string()
                .contains("over the pool's maximum message size of 65536 bytes"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    let err = get(pool.submit(make_blob, 100 << 10).unwrap()).unwrap_err();
    match &err {
        TaskError::Codec(m) => assert!(
            m.to_string()
                .contains("over the pool's maximum message size"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    assert_serves(&pool);
}

/// Case 9: A task past the timeout gets TimedOut; its worker is killed and replaced; other tasks
/// are unaffected.
#[test]
fn fault_task_timeout() {
    let limit = Duration::from_millis(300);
    let pool = ProcessPool::builder()
        .max_workers(2)
        .task_timeout(limit)
        .build()
        .unwrap();
    let h = Holder::new();
    let stuck = pool.submit(hold, h.arg()).unwrap();
    let others: Vec<_> = (0..20u64)
        .map(|i| pool.submit(square, i).unwrap())
        .collect();
    let victim = h.wait_started();
    assert_eq!(get(stuck), Err(TaskError::TimedOut(limit)));
    h.gone();
    for (i, t) in others.into_iter().enumerate() {
        assert_eq!(get(t), Ok((i * i) as u64), "other tasks are unaffected");
    }
    poll_until("the timed-out worker to end", || !proc::alive(victim));
    assert_serves(&pool);
}

/// Case 9b: a per-task timeout stands next to the pool-wide one: the shorter own limit kills its
/// task with its own figure, a task without one keeps the pool's, and a pool without a limit
/// still enforces a task's own.
#[test]
fn fault_per_task_timeout_beside_pool_timeout() {
    let pool_limit = Duration::from_secs(3600);
    let own = Duration::from_millis(200);
    let pool = ProcessPool::builder()
        .max_workers(2)
        .task_timeout(pool_limit)
        .build()
        .unwrap();
    let h = Holder::new();
    let stuck = pool.submit_with_timeout(hold, h.arg(), own).unwrap();
    let victim = h.wait_started();
    assert_eq!(get(stuck), Err(TaskError::TimedOut(own)));
    h.gone();
    poll_until("the timed-out worker to end", || !proc::alive(victim));
    let quick = pool
        .submit_with_timeout(square, 12, Duration::from_secs(60))
        .unwrap();
    assert_eq!(
        get(quick),
        Ok(144),
        "a task within its own limit is unaffected"
    );
    assert_serves(&pool);

    let unlimited = ProcessPool::new(1).unwrap();
    let h = Holder::new();
    let stuck = unlimited.submit_with_timeout(hold, h.arg(), own).unwrap();
    h.wait_started();
    assert_eq!(get(stuck), Err(TaskError::TimedOut(own)));
    h.gone();
    assert_eq!(
        unlimited
            .submit_with_timeout(square, 3, Duration::ZERO)
            .unwrap()
            .result(),
        Err(TaskError::TimedOut(Duration::ZERO)),
        "a zero limit ends the task at once"
    );
    assert_serves(&unlimited);
}

/// Case 9c: a task with its own limit deep in a worker's queue of short tasks, while the
/// supervisor sleeps on the doorbell and the answers before it come through shared memory:
/// its limit still ends it, and every other task gets its answer.
#[test]
fn fault_timeout_behind_many_short_tasks_answered_in_shared_memory() {
    let own = Duration::from_millis(300);
    let pool = ProcessPool::builder().max_workers(1).build().unwrap();
    // Measured 100 µs tasks: the worker is then given dozens ahead.
    for t in (0..50u64)
        .map(|_| pool.submit(spins_us, 100).unwrap())
        .collect::<Vec<_>>()
    {
        assert_eq!(get(t), Ok(100));
    }
    let before: Vec<_> = (0..300)
        .map(|_| pool.submit(spins_us, 100).unwrap())
        .collect();
    let h = Holder::new();
    let stuck = pool.submit_with_timeout(hold, h.arg(), own).unwrap();
    let after: Vec<_> = (0..100)
        .map(|_| pool.submit(spins_us, 100).unwrap())
        .collect();
    for t in before {
        assert_eq!(get(t), Ok(100));
    }
    assert_eq!(get(stuck), Err(TaskError::TimedOut(own)));
    h.gone();
    for t in after {
        assert_eq!(get(t), Ok(100));
    }
    assert_serves(&pool);
}

/// Case 10: `max_tasks_per_worker = 1` over 200 tasks: all complete, no deadlock, every task on a
/// fresh process.
#[test]
fn fault_max_tasks_per_worker_one() {
    let pool = ProcessPool::builder()
        .max_workers(2)
        .max_tasks_per_worker(1)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..200).map(|_| pool.submit(pid, ()).unwrap()).collect();
    let pids: std::collections::HashSet<u32> = tasks.into_iter().map(|t| get(t).unwrap()).collect();
    assert_eq!(pids.len(), 200, "each task ran in its own worker process");
    let v: Vec<u64> = pool
        .map(square, 0..10u64)
        .chunksize(3)
        .map(Result::unwrap)
        .collect();
    assert_eq!(v[9], 81);
}

/// Case 11a: An initializer that panics: a clear error on the tasks, no hang, no spawn storm.
#[test]
fn fault_initializer_panics() {
    let pool = ProcessPool::builder()
        .max_workers(2)
        .initializer(setup_panics, "no config".to_string())
        .build()
        .unwrap();
    for _ in 0..3 {
        match get(pool.submit(square, 2).unwrap()) {
            Err(TaskError::PoolFailed(m)) => {
                assert!(
                    m.to_string().contains("initializer panicked: no config"),
                    "{m}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
    let m = pool.metrics();
    assert!(m.start_failures >= 1);
    // Three failed rounds on two workers with the back-off: a handful of starts, where a
    // storm would be hundreds.
    assert!(m.spawned <= 24, "spawn storm: {m:?}");
}

/// Case 11b: An initializer that exits: a clear error naming the exit code.
#[test]
fn fault_initializer_exits() {
    let pool = ProcessPool::builder()
        .max_workers(1)
        .initializer(setup_exits, 5)
        .build()
        .unwrap();
    match get(pool.submit(square, 2).unwrap()) {
        Err(TaskError::PoolFailed(m)) => assert!(m.to_string().contains("exit code 5"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn initializer_runs_in_every_worker() {
    let pool = ProcessPool::builder()
        .max_workers(2)
        .initializer(setup_ok, 77)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|_| pool.submit(read_init_value, ()).unwrap())
        .collect();
    for t in tasks {
        assert_eq!(get(t), Ok(Some(77)));
    }
}

/// A worker of a different build is refused with a clear error, never run.
#[test]
fn fault_build_mismatch_is_refused() {
    let pool = ProcessPool::builder()
        .max_workers(1)
        .env("CHI_PROCESS_POOL_FINGERPRINT_SALT", "other build")
        .build()
        .unwrap();
    match get(pool.submit(square, 2).unwrap()) {
        Err(TaskError::PoolFailed(m)) => assert!(m.to_string().contains("different build"), "{m}"),
        other => panic!("{other:?}"),
    }
}
