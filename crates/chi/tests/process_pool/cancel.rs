//! Cancelling queued, running and finished tasks; `shutdown_now`.

use super::*;

#[test]
fn cancel_queued_task_never_runs_and_kills_nothing() {
    let pool = pool(1);
    let h = Holder::new();
    let held = pool.submit(hold, h.arg()).unwrap();
    let pid = h.wait_started();
    let ran = temp_path("ran");
    // Sent to the busy worker's pipeline (or still queued): either way it has not started.
    let victim = pool.submit(touch, ran.display().to_string()).unwrap();
    assert!(victim.cancel());
    assert!(victim.cancelled());
    assert_eq!(get(victim), Err(TaskError::Cancelled));
    h.release();
    assert_eq!(get(held), Ok(pid), "the running task was not disturbed");
    assert_eq!(worker_pid(&pool), pid, "no worker was killed");
    assert!(!ran.exists(), "a cancelled task never runs");
    assert_eq!(pool.metrics().died, 0);
}

#[test]
fn cancel_running_task_kills_its_worker_and_pool_goes_on() {
    let pool = pool(1);
    let h = Holder::new();
    let t = pool.submit(hold, h.arg()).unwrap();
    let pid = h.wait_started();
    assert!(t.cancel(), "a running process task can be cancelled");
    assert_eq!(get(t), Err(TaskError::Cancelled));
    h.gone();
    poll_until("the cancelled task's worker to end", || !proc::alive(pid));
    assert_serves(&pool);
    assert_ne!(worker_pid(&pool), pid, "a new worker took over");
}

#[test]
fn cancel_pending_takes_back_a_waiting_task_and_never_stops_a_running_one() {
    let pool = pool(1);
    let h = Holder::new();
    let held = pool.submit(hold, h.arg()).unwrap();
    let pid = h.wait_started();
    assert!(!held.cancel_pending(), "a running task is not pending");
    assert!(held.running() && !held.cancelled());
    let ran = temp_path("ran-pending");
    // Sent to the busy worker's pipeline (or still queued): either way it has not started.
    let victim = pool.submit(touch, ran.display().to_string()).unwrap();
    assert!(victim.cancel_pending());
    assert!(victim.cancel_pending(), "cancelled already: still true");
    assert_eq!(get(victim), Err(TaskError::Cancelled));
    h.release();
    assert_eq!(get(held), Ok(pid), "the running task ran on, undisturbed");
    assert_eq!(worker_pid(&pool), pid, "no worker was killed");
    assert!(!ran.exists(), "a cancelled task never runs");
    assert_eq!(pool.metrics().died, 0);
    let done = pool.submit(square, 4).unwrap();
    done.wait_timeout(NEVER);
    assert!(!done.cancel_pending());
    assert_eq!(get(done), Ok(16));
}

#[test]
fn cancel_pending_racing_the_dispatcher_is_true_exactly_for_the_tasks_that_never_run() {
    for in_flight in [1, 32, 128] {
        let pool = ProcessPool::builder()
            .max_workers(2)
            .max_in_flight(in_flight)
            .build()
            .unwrap();
        let log = temp_path("appended");
        let tasks: Vec<_> = (0..1_500u64)
            .map(|i| pool.submit(append, (log.display().to_string(), i)).unwrap())
            .collect();
        // Each odd task is taken back the moment the task before it finishes: when the pool
        // sends, claims and marks running the next ones.
        let mut taken = vec![false; tasks.len()];
        for k in (1..tasks.len()).step_by(2) {
            tasks[k - 1].wait_timeout(NEVER);
            taken[k] = tasks[k].cancel_pending();
        }
        let ran = {
            for t in &tasks {
                t.wait_timeout(NEVER);
            }
            pool.shutdown();
            ran_once(&log)
        };
        for (i, (t, taken)) in tasks.into_iter().zip(taken).enumerate() {
            let i = i as u64;
            if taken {
                assert_eq!(
                    get(t),
                    Err(TaskError::Cancelled),
                    "task {i}, in flight {in_flight}"
                );
                assert!(
                    !ran.contains(&i),
                    "task {i} was taken back but ran (in flight {in_flight})"
                );
            } else {
                assert_eq!(get(t), Ok(i), "task {i}, in flight {in_flight}");
                assert!(ran.contains(&i), "task {i}");
            }
        }
        let _ = std::fs::remove_file(&log);
    }
}

/// The ids in an `append` log, checking that none ran twice.
fn ran_once(log: &std::path::Path) -> std::collections::HashSet<u64> {
    let mut ran = std::collections::HashSet::new();
    for l in std::fs::read_to_string(log).unwrap_or_default().lines() {
        let id: u64 = l.parse().unwrap();
        assert!(ran.insert(id), "task {id} ran twice");
    }
    ran
}

/// Idle workers take over messages queued on busy ones (a task that holds its worker until
/// the end, long tasks among short ones, three workers) while tasks are taken back: every
/// task runs exactly once or, if taken back, never, and no worker dies.
#[test]
fn tasks_taken_over_and_taken_back_run_exactly_once_or_never() {
    let pool = pool(3);
    assert_eq!(pool.wait_for_workers(NEVER), 3);
    let log = temp_path("appended");
    // Whatever is sent behind this one can finish only if another worker takes it over.
    let h = Holder::new();
    let held = pool.submit(hold, h.arg()).unwrap();
    h.wait_started();
    let mut tasks = Vec::new();
    let mut long = Vec::new();
    for i in 0..1_200u64 {
        if i % 100 == 0 {
            long.push(pool.submit(sleeps_ms, 20).unwrap());
        }
        tasks.push(pool.submit(append, (log.display().to_string(), i)).unwrap());
    }
    let mut taken = vec![false; tasks.len()];
    for k in (3..tasks.len()).step_by(7) {
        tasks[k - 3].wait_timeout(NEVER);
        taken[k] = tasks[k].cancel_pending();
    }
    for t in long {
        assert_eq!(get(t), Ok(20));
    }
    for t in &tasks {
        t.wait_timeout(NEVER);
    }
    let m = pool.metrics();
    assert!(m.rebalanced > 0, "{m:?}");
    h.release();
    assert!(get(held).is_ok());
    pool.shutdown();
    let ran = ran_once(&log);
    for (i, (t, taken)) in tasks.into_iter().zip(taken).enumerate() {
        let i = i as u64;
        if taken {
            assert_eq!(get(t), Err(TaskError::Cancelled), "task {i}");
            assert!(!ran.contains(&i), "task {i} was taken back but ran");
        } else {
            assert_eq!(get(t), Ok(i), "task {i}");
            assert!(ran.contains(&i), "task {i}");
        }
    }
    let m = pool.metrics();
    assert_eq!((m.queued, m.in_flight, m.died), (0, 0, 0), "{m:?}");
    let _ = std::fs::remove_file(&log);
}

#[test]
fn cancel_finished_task_is_false() {
    let pool = pool(1);
    let t = pool.submit(square, 3).unwrap();
    t.wait_timeout(NEVER);
    assert!(!t.cancel());
    assert_eq!(get(t), Ok(9));
}

#[test]
fn shutdown_now_cancels_queued_tasks() {
    let pool = pool(1);
    let h = Holder::new();
    let held = pool.submit(hold, h.arg()).unwrap();
    h.wait_started();
    let queued: Vec<_> = (0..10u64)
        .map(|i| pool.submit(square, i).unwrap())
        .collect();
    // shutdown_now waits for the running task; release it once the cancellations are done,
    // which shows as every queued task being finished.
    let n = std::thread::scope(|s| {
        s.spawn(|| {
            poll_until("the queued tasks to be cancelled", || {
                queued.iter().all(Task::done)
            });
            h.release();
        });
        pool.shutdown_now()
    });
    assert_eq!(n, 10);
    for t in queued {
        assert_eq!(get(t), Err(TaskError::Cancelled));
    }
    assert!(get(held).is_ok(), "the running task finished");
}
