//! Panics in tasks.

use super::*;

#[test]
fn task_panic_worker_lives_on() {
    let pool = ThreadPool::new(1).unwrap();
    let (tx, rx) = mpsc::channel();
    let err = pool
        .submit(move || -> u8 {
            tx.send(thread_name()).unwrap();
            panic!("task exploded")
        })
        .unwrap()
        .result()
        .unwrap_err();
    assert_eq!(err.panic_message(), Some("task exploded"));
    let panicked_on = recv(&rx, "the panicking task's thread");
    let next_on = pool.submit(thread_name).unwrap().result().unwrap();
    assert_eq!(panicked_on, next_on, "the worker died with its task");
    assert_eq!(pool.metrics().workers, 1);
    poll_until("metrics count the panic", || pool.metrics().panicked == 1);
}

#[test]
fn task_panic_many_all_reported() {
    let pool = ThreadPool::new(2).unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            pool.submit(move || if i % 2 == 0 { panic!("even {i}") } else { i })
                .unwrap()
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.result() {
            Ok(v) => assert_eq!(v, i),
            Err(e) => assert_eq!(e.panic_message(), Some(format!("even {i}").as_str())),
        }
    }
    pool.shutdown();
    let m = pool.metrics();
    assert_eq!((m.completed, m.panicked), (25, 25), "{m:?}");
}
