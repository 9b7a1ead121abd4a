//! The seed's walkthrough: ten tasks on a pool of five, callbacks printing each result.
use std::time::Duration;

fn task(n: u32, m: u32) -> String {
    println!(
        "task({n}, {m}) running on {}",
        std::thread::current().name().unwrap_or("?")
    );
    std::thread::sleep(Duration::from_millis(200));
    format!(
        "{} finished task({n}, {m})",
        std::thread::current().name().unwrap_or("?")
    )
}

fn main() {
    let pool = chi::ThreadPool::new(5).expect("5 workers is a valid pool");
    let mut tasks = Vec::new();
    for i in 0..10 {
        let t = pool
            .submit(move || task(i, 3))
            .expect("the pool is running");
        t.add_done_callback(|outcome| match outcome {
            Ok(msg) => println!("callback: {msg}"),
            Err(e) => println!("callback: failed: {e}"),
        });
        tasks.push(t);
    }
    for t in tasks {
        let _ = t.result();
    }
    pool.shutdown();
    println!("all done");
}
