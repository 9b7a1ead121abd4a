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
