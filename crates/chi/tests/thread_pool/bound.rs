//! The bounded queue.

use super::*;

/// A pool of one worker and one queue place, with the worker held and the place taken.
fn full_pool() -> (Arc<ThreadPool>, Gate, Task<()>, Task<&'static str>) {
    let pool = Arc::new(
        ThreadPool::builder()
            .max_workers(1)
            .queue_bound(1)
            .build()
            .unwrap(),
    );
    let gate = Gate::new();
    let running = pool.submit(gate.hold()).unwrap();
    gate.wait_started(1);
    let queued = pool.submit(|| "queued").unwrap();
    (pool, gate, running, queued)
}

#[test]
fn submit_blocks_while_full() {
    let (pool, gate, running, queued) = full_pool();
    let log = Arc::new(Mutex::new(Vec::<&str>::new()));
    let (tid_tx, tid_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let submitter = {
        let (pool, log) = (pool.clone(), log.clone());
        thread::spawn(move || {
            tid_tx.send(common::current_tid()).unwrap();
            let log2 = log.clone();
            let t = pool
                .submit(move || log2.lock().unwrap().push("third ran"))
                .unwrap();
            // Logged after `submit` returned; the task itself may already have run.
            log.lock().unwrap().push("third admitted");
            done_tx.send(()).unwrap();
            t
        })
    };
    // The submitter is blocked inside `submit` (asleep, not finished).
    let tid = recv(&tid_rx, "submitter tid");
    poll_until("the submitter sleeps in submit", || {
        common::thread_state(tid) == Some('S')
    });
    assert!(
        done_rx.try_recv().is_err(),
        "submit returned while the queue was full"
    );
    assert!(matches!(
        pool.try_submit(|| "x"),
        Err(TrySubmitError::Full(_))
    ));

    // Freeing the worker lets it take the queued task, which frees the place.
    log.lock().unwrap().push("worker freed");
    gate.open();
    recv(&done_rx, "submit returning");
    let third = submitter.join().unwrap();
    assert_eq!(queued.result(), Ok("queued"));
    running.result().unwrap();
    third.result().unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log[0], "worker freed",
        "submit returned before the worker freed a place: {log:?}"
    );
    assert_eq!(log.len(), 3, "{log:?}");
}

#[test]
fn try_submit_full_hands_closure_back() {
    let (pool, gate, running, queued) = full_pool();
    let err = pool.try_submit(|| 41 + 1).unwrap_err();
    assert!(err.is_full());
    assert_eq!(format!("{err:?}"), "Full(..)");
    assert_eq!(err.into_inner()(), 42);
    gate.open();
    running.result().unwrap();
    queued.result().unwrap();
}

#[test]
fn submit_timeout_full_hands_closure_back() {
    let (pool, gate, running, queued) = full_pool();
    match pool.submit_timeout(|| 7, SHORT) {
        Err(e @ SubmitTimeoutError::Timeout(_)) => {
            assert!(e.is_timeout());
            assert_eq!(e.into_inner()(), 7);
        }
        other => panic!("expected Timeout, got {:?}", other.map(|_| ())),
    }
    gate.open();
    running.result().unwrap();
    queued.result().unwrap();
    // With room, submit_timeout admits at once.
    assert_eq!(
        pool.submit_timeout(|| 8, common::NEVER).unwrap().result(),
        Ok(8)
    );
}

/// A submitter blocked on a full queue when the pool shuts down gets `ShutDown`, not a hang.
#[test]
fn shutdown_wakes_blocked_submitter() {
    let (pool, gate, running, queued) = full_pool();
    let (tid_tx, tid_rx) = mpsc::channel();
    let submitter = {
        let pool = pool.clone();
        thread::spawn(move || {
            tid_tx.send(common::current_tid()).unwrap();
            pool.submit(|| 3).map(|_| ()).map_err(|e| e.into_inner()())
        })
    };
    let tid = recv(&tid_rx, "submitter tid");
    poll_until("the submitter sleeps in submit", || {
        common::thread_state(tid) == Some('S')
    });
    let shutter = {
        let pool = pool.clone();
        thread::spawn(move || pool.shutdown())
    };
    // The worker is still held, so no place frees: only the shutdown can wake it.
    let refused = bounded("the blocked submitter", move || submitter.join().unwrap());
    assert_eq!(refused, Err(3));
    gate.open();
    shutter.join().unwrap();
    running.result().unwrap();
    assert_eq!(queued.result(), Ok("queued"));
}

/// Submitting from a task of the same pool never blocks on the bound (it could deadlock).
#[test]
fn nested_submit_ignores_bound() {
    let pool = Arc::new(
        ThreadPool::builder()
            .max_workers(1)
            .queue_bound(1)
            .build()
            .unwrap(),
    );
    let p = pool.clone();
    let outer = pool
        .submit(move || {
            let inner: Vec<_> = (0..5).map(|i| p.submit(move || i * 2).unwrap()).collect();
            inner.into_iter().map(|t| t.result().unwrap()).sum::<i32>()
        })
        .unwrap();
    assert_eq!(
        bounded("nested submits over the bound", move || outer.result()),
        Ok(20)
    );
}
