//! Awaiting chi tasks from async code: CPU work runs on a chi pool, the tokio runtime only
//! waits. `Task<T>` is a `Future<Output = Result<T, TaskError>>`, so `.await` never blocks an
//! executor thread.
use chi::{Completer, ThreadPool};

/// Stand-in for CPU-bound work that should stay off the async runtime's threads.
fn sum_of_squares(n: u64) -> u64 {
    (1..=n).map(|i| i * i).sum()
}

#[tokio::main]
async fn main() {
    let pool = ThreadPool::new(2).expect("2 workers is a valid pool");

    // One task, awaited.
    let total = pool
        .submit(|| sum_of_squares(1_000))
        .expect("the pool is running")
        .await
        .expect("the task does not panic");
    println!("sum of squares 1..=1000 = {total}");
    assert_eq!(total, 333_833_500);

    // Several tasks awaited together; each outcome arrives as a `Result`.
    let tasks: Vec<_> = (1..=4u64)
        .map(|n| {
            pool.submit(move || sum_of_squares(n))
                .expect("the pool is running")
        })
        .collect();
    let sums: Vec<u64> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|outcome| outcome.expect("no task panics"))
        .collect();
    println!("sums of squares for 1..=4: {sums:?}");
    assert_eq!(sums, [1, 5, 14, 30]);

    // A panic in a task is an error value, not a crash of the runtime.
    println!("a task that panics (Rust's panic hook prints the message on stderr):");
    let err = pool
        .submit(|| -> u64 { panic!("bad input") })
        .expect("the pool is running")
        .await
        .expect_err("the task panicked");
    println!("a panicking task gives: {err}");
    assert_eq!(err.panic_message(), Some("bad input"));

    // A task without a pool: bridge a callback-style API into async code with a Completer.
    let (completer, task) = Completer::new();
    std::thread::spawn(move || completer.set_result("answer from another thread"));
    let answer = task.await.expect("the completer sets a value");
    println!("completable task: {answer}");
    assert_eq!(answer, "answer from another thread");

    pool.shutdown();
}
