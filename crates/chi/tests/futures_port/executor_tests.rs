//! `executor.py`: ExecutorTest; `test_thread_pool.py`: ThreadPoolExecutorTest.

use super::*;

#[test]
fn submit() {
    let executor = executor();
    let future = executor.submit(|| 2i32.pow(8)).unwrap();
    assert_eq!(future.result(), Ok(256));
}

#[test]
fn map() {
    let executor = executor();
    let got: Vec<u64> = executor
        .map(|(b, e): (u64, u32)| b.pow(e), (0..10).zip(0..10))
        .map(Result::unwrap)
        .collect();
    let expected: Vec<u64> = (0..10u64).zip(0..10u32).map(|(b, e)| b.pow(e)).collect();
    assert_eq!(got, expected);
}

#[test]
fn map_exception() {
    let executor = executor();
    let mut i = executor.map(
        |(x, y)| divmod(x, y),
        [5, 5, 5, 5].into_iter().zip([2, 3, 0, 5]),
    );
    assert_eq!(i.next(), Some(Ok((2, 1))));
    assert_eq!(i.next(), Some(Ok((1, 2))));
    assert!(i.next().unwrap().unwrap_err().is_panic());
    assert_eq!(i.next(), Some(Ok((1, 0))));
    assert_eq!(i.next(), None);
    assert_eq!(i.next(), None);
}

/// An error value the callable returns is not the map's timeout, with or without one.
#[test]
fn map_timeout_from_callable() {
    fn timeout_on_one(x: i32) -> Result<i32, &'static str> {
        if x == 1 { Err("TimeoutError") } else { Ok(x) }
    }
    let executor = executor();
    for timeout in [None, Some(common::NEVER)] {
        let i = executor.map(timeout_on_one, [0, 1, 2, 3]);
        let mut i: Box<dyn Iterator<Item = _>> = match timeout {
            None => Box::new(i),
            Some(t) => Box::new(i.timeout(t)),
        };
        assert_eq!(i.next(), Some(Ok(Ok(0))));
        assert_eq!(i.next(), Some(Ok(Err("TimeoutError"))));
        assert_eq!(i.next(), Some(Ok(Ok(2))));
        assert_eq!(i.next(), Some(Ok(Ok(3))));
        assert_eq!(i.next(), None);
    }
}

#[test]
fn map_timeout() {
    let executor = executor();
    let event = Gate::new();
    let h = event.handle();
    let timeout = Duration::from_millis(200);
    let mut i = executor
        .map(
            move |slow: bool| {
                if slow {
                    h.wait();
                }
            },
            [false, false, true],
        )
        .timeout(timeout);
    let mut results = Vec::new();
    let mut timed_out = false;
    for r in i.by_ref() {
        match r {
            Ok(()) => results.push(()),
            Err(TaskError::TimedOut(d)) => {
                assert_eq!(d, timeout);
                timed_out = true;
                break;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(timed_out, "expected a timeout");
    // On a heavily loaded machine even the instant tasks may miss the timeout.
    assert!(results.len() <= 2);
    // The remaining calls are cancelled, so the iterator is exhausted.
    assert!(i.next().is_none());
    assert!(i.next().is_none());
    event.open();
}

/// Dropping the iterator is Rust's `close()`. Unlike CPython, the tasks already in flight
/// are not cancelled (dropping a Task never cancels); nothing hangs.
#[test]
fn map_close() {
    let executor = executor();
    let mut i = executor.map(
        |(x, y)| divmod(x, y),
        [5, 5, 5, 5].into_iter().zip([2, 0, 3, 5]),
    );
    assert_eq!(i.next(), Some(Ok((2, 1))));
    drop(i);
    bounded("shutdown after a closed map", move || executor.shutdown());
}

/// `buffersize` is `lookahead`; zero (a ValueError in CPython) is taken as one.
#[test]
fn map_buffersize_value_validation() {
    let executor = executor();
    let got: Vec<String> = executor
        .map(|x: i32| x.to_string(), 0..4)
        .lookahead(0)
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, ["0", "1", "2", "3"]);
}

#[test]
fn map_buffersize() {
    let executor = executor();
    for buffersize in [1, 2, 4, 8] {
        let res: Vec<String> = executor
            .map(|x: i32| x.to_string(), 0..4)
            .lookahead(buffersize)
            .map(Result::unwrap)
            .collect();
        assert_eq!(res, ["0", "1", "2", "3"], "buffersize {buffersize}");
    }
}

#[test]
fn map_buffersize_on_multiple_iterables() {
    let executor = executor();
    for buffersize in [1, 2, 4, 8] {
        let res: Vec<i32> = executor
            .map(|(a, b): (i32, i32)| a + b, (0..4).zip(0..4))
            .lookahead(buffersize)
            .map(Result::unwrap)
            .collect();
        assert_eq!(res, [0, 2, 4, 6], "buffersize {buffersize}");
    }
}

#[test]
fn map_buffersize_on_infinite_iterable() {
    let executor = executor();
    let mut res = executor.map(|x: u64| x.to_string(), 0..).lookahead(2);
    assert_eq!(res.next(), Some(Ok("0".to_owned())));
    assert_eq!(res.next(), Some(Ok("1".to_owned())));
    assert_eq!(res.next(), Some(Ok("2".to_owned())));
}

#[test]
fn map_buffersize_on_multiple_infinite_iterables() {
    let executor = executor();
    let mut res = executor
        .map(|(a, b): (u64, u64)| a + b, (0..).zip(0..))
        .lookahead(2);
    assert_eq!(res.next(), Some(Ok(0)));
    assert_eq!(res.next(), Some(Ok(2)));
    assert_eq!(res.next(), Some(Ok(4)));
}

#[test]
fn map_buffersize_on_empty_iterable() {
    let executor = executor();
    let mut res = executor
        .map(|x: i32| x.to_string(), Vec::new())
        .lookahead(2);
    assert_eq!(res.next(), None);
}

/// chi pulls nothing before the first result is asked for (CPython pulls `buffersize` at
/// once), and `buffersize + 1` once one result was consumed (it refills before handing
/// the result out).
#[test]
fn map_buffersize_when_buffer_is_full() {
    let executor = executor();
    let mut ints = 0..4;
    let buffersize = 2;
    let mut res = executor
        .map(|x: i32| x.to_string(), ints.by_ref())
        .lookahead(buffersize);
    assert_eq!(res.next(), Some(Ok("0".to_owned())));
    drop(res);
    executor.shutdown(); // wait for tasks to complete
    assert_eq!(
        ints.next(),
        Some(buffersize as i32 + 1),
        "should have fetched only buffersize + 1 elements"
    );
}

#[test]
fn shutdown_race_issue12456() {
    let executor = executor();
    let mut m = executor.map(|x: i32| x.to_string(), vec![2; util::WORKER_COUNT + 1]);
    assert!(m.next().is_some());
    drop(m);
    bounded("shutdown with map tasks in flight", move || {
        executor.shutdown()
    });
}

/// The executor keeps no reference to a discarded task's closure once it has run.
#[test]
fn no_stale_references() {
    let executor = executor();
    let my_object = DropCounter::new();
    let obj = my_object.track(());
    // Deliberately discarding the task.
    drop(executor.submit(move || drop(obj)).unwrap());
    poll_until("the closure's capture is freed", || my_object.count() == 1);
}

#[test]
fn max_workers_negative() {
    // usize cannot be negative; zero is the one invalid count.
    assert!(ThreadPool::new(0).is_err());
}

/// The map iterator keeps no reference to a result it handed out.
#[test]
fn free_reference() {
    let executor = executor();
    let objects = DropCounter::new();
    let o = objects.clone();
    for (i, obj) in executor.map(move |x: usize| o.track(x), 0..10).enumerate() {
        assert_eq!(*obj.unwrap().get(), i);
        assert_eq!(
            objects.count(),
            i + 1,
            "the yielded value was dropped at once"
        );
    }
}

/// A "falsey" exception (CPython gh-132063) is still reported: here, an empty panic message.
#[test]
fn swallows_falsey_exceptions() {
    let executor = executor();
    let err = executor
        .submit(|| -> u8 { panic!("") })
        .unwrap()
        .result()
        .unwrap_err();
    assert_eq!(err, TaskError::panicked(""));
}

// ----- ThreadPoolExecutorTest -----

/// Opposite of CPython (issue 11777): chi's map is lazy, so nothing runs until iterated.
#[test]
fn map_submits_without_iteration() {
    let executor = executor();
    let finished = Arc::new(Mutex::new(Vec::new()));
    let f = finished.clone();
    let m = executor.map(move |n: i32| f.lock().unwrap().push(n), 0..10);
    executor.shutdown();
    assert!(finished.lock().unwrap().is_empty());
    drop(m);
}

/// chi sizes for CPU-bound work: the available parallelism (CPython: `min(32, cpu + 4)`).
#[test]
fn default_workers() {
    let executor = ThreadPool::builder().build().unwrap();
    let expected = thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(executor.max_workers(), expected);
}

#[test]
fn saturation() {
    let executor = ThreadPool::new(4).unwrap();
    let sem = Gate::new();
    let tasks: Vec<_> = (0..15 * executor.max_workers())
        .map(|_| executor.submit(sem.hold()).unwrap())
        .collect();
    sem.wait_started(executor.max_workers());
    assert_eq!(executor.metrics().workers, executor.max_workers());
    sem.open();
    executor.shutdown();
    assert!(tasks.iter().all(Task::done));
}

#[test]
fn idle_thread_reuse() {
    let executor = ThreadPool::builder()
        .max_workers(util::WORKER_COUNT)
        .thread_name("cf-reuse")
        .build()
        .unwrap();
    for (a, b) in [(21, 2), (6, 7), (3, 14)] {
        assert_eq!(executor.submit(move || mul(a, b)).unwrap().result(), Ok(42));
        common::wait_all_asleep("cf-reuse", 1);
    }
    assert_eq!(executor.metrics().workers, 1);
    executor.shutdown();
}

#[test]
fn executor_map_current_future_cancel() {
    let stop_event = Gate::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log_n_wait = {
        let (log, h) = (log.clone(), stop_event.handle());
        move |ident: &'static str| {
            log.lock().unwrap().push(format!("ident={ident:?} started"));
            h.wait();
            log.lock().unwrap().push(format!("ident={ident:?} stopped"));
        }
    };
    let pool = ThreadPool::new(1).unwrap();
    // Submit work to saturate the pool.
    let first = log_n_wait.clone();
    let fut = pool.submit(move || first("first")).unwrap();
    stop_event.wait_started(1);
    {
        let mut gen_ = pool
            .map(log_n_wait, ["second", "third"])
            .timeout(Duration::ZERO);
        assert!(matches!(gen_.next(), Some(Err(TaskError::TimedOut(_)))));
    }
    stop_event.open();
    fut.result().unwrap();
    pool.shutdown();
    // "second" is cancelled by the timeout; "third" because it was still in flight.
    assert_eq!(
        *log.lock().unwrap(),
        [r#"ident="first" started"#, r#"ident="first" stopped"#]
    );
}
