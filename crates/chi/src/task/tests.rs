//! Unit tests of the task cell, and loom models of its races (`--cfg chi_loom`, see
//! `.ci/loom.sh`). Each model is one race, two threads.

use super::Task;
use super::cell::{FnCell, Runnable};
use super::state::{CANCELLED, COMPLETE, NOTIFY, RELEASED, RUNNING, Snapshot};
use crate::TaskError;
use crate::loom::sync::atomic::{AtomicUsize, Ordering};
use crate::loom::{model, spawn};
use std::sync::Arc;

/// A job and its handle sharing one cell, as `ThreadPool::submit` makes them.
fn job_and_task<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> (Arc<dyn Runnable>, Task<T>) {
    let cell = Arc::new(FnCell::new(f));
    let job: Arc<dyn Runnable> = cell.clone();
    (job, Task::from_cell(cell))
}

/// Counts drops of the values it hands out.
struct Dropped(Arc<AtomicUsize>);
impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn snapshot_takeable_needs_release_only_after_notify() {
    assert!(Snapshot(COMPLETE).is_takeable());
    assert!(!Snapshot(COMPLETE | NOTIFY).is_takeable());
    assert!(Snapshot(COMPLETE | NOTIFY | RELEASED).is_takeable());
    assert!(!Snapshot(RUNNING).is_takeable());
    assert!(Snapshot(RUNNING).is_running());
    assert!(Snapshot(CANCELLED | COMPLETE).is_cancelled());
}

#[test]
fn cancel_races_completion() {
    model(|| {
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let (job, task) = job_and_task(move || {
            r.fetch_add(1, Ordering::SeqCst);
            7
        });
        let worker = spawn(move || {
            let _ = job.run();
        });
        let cancelled = task.cancel();
        worker.join().unwrap();
        let out = task.result();
        if cancelled {
            assert_eq!(out, Err(TaskError::Cancelled));
            assert_eq!(ran.load(Ordering::SeqCst), 0);
        } else {
            assert_eq!(out, Ok(7));
            assert_eq!(ran.load(Ordering::SeqCst), 1);
        }
    });
}

#[test]
fn callback_added_during_completion() {
    model(|| {
        let calls = Arc::new(AtomicUsize::new(0));
        let (job, task) = job_and_task(|| 5u32);
        let worker = spawn(move || {
            let _ = job.run();
        });
        let c = calls.clone();
        task.add_done_callback(move |o| {
            assert_eq!(o, &Ok(5));
            c.fetch_add(1, Ordering::SeqCst);
        });
        worker.join().unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(task.result(), Ok(5));
    });
}

#[test]
fn waiter_registered_during_completion() {
    model(|| {
        let (job, task) = job_and_task(|| 9u8);
        let worker = spawn(move || {
            let _ = job.run();
        });
        // Blocks (parks) unless the worker finished first; loom explores both.
        assert_eq!(task.result(), Ok(9));
        drop(worker); // see waiter_and_callback_race_completion
    });
}

/// A task marked cold (queued behind a wake-up) is waited on by yielding, then spinning and
/// parking: the waiter is woken in every interleaving, and the hint, set while the worker may
/// already run or complete the task, changes no transition.
#[test]
fn cold_task_waiter_is_woken() {
    model(|| {
        let cell = Arc::new(FnCell::new(|| 4u8));
        let job: Arc<dyn Runnable> = cell.clone();
        let worker = spawn(move || {
            let _ = job.run();
        });
        cell.mark_cold();
        let task = Task::from_cell(cell);
        assert_eq!(task.result(), Ok(4));
        drop(worker); // see waiter_and_callback_race_completion
    });
}

#[test]
fn cold_hint_is_only_a_hint() {
    let s = Snapshot(super::state::COLD);
    assert!(s.is_cold_and_queued());
    assert!(!Snapshot(super::state::COLD | RUNNING).is_cold_and_queued());
    assert!(!Snapshot(super::state::COLD | CANCELLED).is_cold_and_queued());
    assert!(Snapshot(super::state::COLD | COMPLETE).is_takeable());
    assert!(!Snapshot(super::state::COLD | RUNNING).is_cancelled());
}

#[test]
fn waiter_and_callback_race_completion() {
    model(|| {
        let calls = Arc::new(AtomicUsize::new(0));
        let (job, task) = job_and_task(|| 1u8);
        let c = calls.clone();
        task.add_done_callback(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        });
        let worker = spawn(move || {
            let _ = job.run();
        });
        // The value may be taken only after the callback has finished reading it.
        assert_eq!(task.result(), Ok(1));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // No join: the completer may still unpark us after we stopped waiting (a stale
        // unpark is legal in std, but loom treats it as waking a thread blocked in join).
        // loom runs the worker to its end before the model ends.
        drop(worker);
    });
}

#[test]
fn waker_registered_during_completion() {
    model(|| {
        let (job, task) = job_and_task(|| 3u16);
        let worker = spawn(move || {
            let _ = job.run();
        });
        #[cfg(chi_loom)]
        let out = loom::future::block_on(task);
        #[cfg(not(chi_loom))]
        let out = futures::executor::block_on(task);
        assert_eq!(out, Ok(3));
        worker.join().unwrap();
    });
}

#[test]
fn handle_dropped_before_run() {
    model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let d = drops.clone();
        let (job, task) = job_and_task(move || Dropped(d));
        let worker = spawn(move || {
            let _ = job.run();
        });
        drop(task);
        worker.join().unwrap();
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "the result is dropped exactly once"
        );
    });
}

#[test]
fn closure_dropped_once_when_cancelled() {
    model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let guard = Dropped(drops.clone());
        let (job, task) = job_and_task(move || {
            let _keep = &guard;
            0u8
        });
        let worker = spawn(move || {
            let _ = job.run();
        });
        let _ = task.cancel();
        worker.join().unwrap();
        drop(task);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "the closure is dropped exactly once"
        );
    });
}

/// Counts its drop, then panics (unless the thread is already unwinding).
struct PanicsOnDrop(Arc<AtomicUsize>);
impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        if !std::thread::panicking() {
            panic!("a captured value panicked in Drop");
        }
    }
}

#[test]
fn cancel_races_run_of_a_closure_that_panics_in_drop() {
    model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let guard = PanicsOnDrop(drops.clone());
        let (job, task) = job_and_task(move || {
            let _keep = &guard;
            0u8
        });
        let worker = spawn(move || {
            let _ = job.run();
        });
        let cancelled = task.cancel();
        worker.join().unwrap();
        assert!(task.done(), "the handle completes either way");
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "the closure is dropped once"
        );
        match task.result() {
            // Cancel won: the closure was dropped (and its panic caught) inside `cancel`.
            Err(TaskError::Cancelled) => assert!(cancelled),
            // The run won: the drop at the end of the call is the task's own panic.
            Err(TaskError::Panicked { .. }) => assert!(!cancelled),
            other => panic!("unexpected outcome {other:?}"),
        }
    });
}

#[cfg(not(chi_loom))]
#[test]
fn panicking_callback_does_not_stop_others() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (job, task) = job_and_task(|| 2u8);
    task.add_done_callback(|_| panic!("callback failure"));
    let c = calls.clone();
    task.add_done_callback(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(job.run(), super::RunResult::Completed);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(task.result(), Ok(2));
}

/// A completer finishing a task races the handle cancelling it: exactly one wins, the value
/// is dropped exactly once, and the handle's outcome matches the winner.
#[test]
fn completer_completion_races_cancel() {
    model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (completer, task) = super::Completer::new();
        let value = Dropped(drops.clone());
        let producer = spawn(move || {
            let _ = completer.set_result(value);
        });
        let cancelled = task.cancel();
        producer.join().unwrap();
        let out = task.result();
        assert_eq!(out.is_err(), cancelled);
        drop(out);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}
