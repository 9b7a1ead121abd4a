//! Scoped tasks: `pool.scope` runs closures that borrow from the caller's stack (no `Arc`, no
//! `'static`), and returns only when every one of them has finished, like `std::thread::scope`
//! but on the pool's threads.
use chi::ThreadPool;

fn main() {
    let pool = ThreadPool::new(2).expect("2 workers is a valid pool");
    let text = String::from("the quick brown fox\njumps over\nthe lazy dog\nthe end");
    let lines: Vec<&str> = text.lines().collect();

    // Read-only borrows: count words per line; each scoped task returns its value.
    let counts: Vec<usize> = pool.scope(|s| {
        let tasks: Vec<_> = lines
            .iter()
            .map(|line| s.spawn(move || line.split_whitespace().count()))
            .collect();
        tasks
            .into_iter()
            .map(|t| t.result().expect("counting does not panic"))
            .collect()
    });
    println!("words per line: {counts:?}");
    assert_eq!(counts, [4, 2, 3, 2]);

    // Mutable borrows: each task fills its own part of a buffer on the stack.
    let mut squares = [0u64; 8];
    pool.scope(|s| {
        for (chunk_index, chunk) in squares.chunks_mut(2).enumerate() {
            s.spawn(move || {
                for (offset, slot) in chunk.iter_mut().enumerate() {
                    let n = (chunk_index * 2 + offset) as u64;
                    *slot = n * n;
                }
            });
        }
    }); // every spawned task has finished here, so `squares` is ours again
    println!("squares: {squares:?}");
    assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49]);

    pool.shutdown();
}
