//! `map` and `map_unordered`: order, chunks, laziness, timeouts, per-item failures.

use super::*;

#[test]
fn map_is_ordered_chunked_and_lazy() {
    let pool = pool(2);
    let v: Vec<u64> = pool
        .map(square, 0..1000u64)
        .chunksize(64)
        .map(Result::unwrap)
        .collect();
    assert_eq!(v, (0..1000u64).map(|x| x * x).collect::<Vec<_>>());
    // Chunksize 1 and 0 (= 1) work too.
    let v: Vec<u64> = pool
        .map(square, [3u64, 4])
        .chunksize(0)
        .map(Result::unwrap)
        .collect();
    assert_eq!(v, [9, 16]);
    // An endless input is fine: only the look-ahead is pulled.
    let v: Vec<u64> = pool
        .map(square, 0u64..)
        .chunksize(10)
        .take(25)
        .map(Result::unwrap)
        .collect();
    assert_eq!(v.len(), 25);
    assert_eq!(v[24], 576);
}

/// With a known input length the last chunks shrink to a share of what is left (never under
/// an eighth of the chunksize), so the workers finish together; with an unknown length every
/// chunk is full. Counted with the pool's message counter (less the messages sent again
/// because an idle worker took them over at the end).
#[test]
fn map_shrinks_its_last_chunks_only_when_the_input_length_is_known() {
    let pool = pool(2);
    let sent = |p: &ProcessPool| {
        let m = p.metrics();
        m.messages - m.rebalanced
    };
    let expected: Vec<u64> = (0..1000u64).map(|x| x * x).collect();
    let before = sent(&pool);
    let v: Vec<u64> = pool
        .map(square, 0..1000u64)
        .chunksize(100)
        .map(Result::unwrap)
        .collect();
    assert_eq!(v, expected);
    // 7 × 100 while a quarter of what is left is at least 100, then 75 57 42 32 24 18 13,
    // then the floor of 12 (12 12 12) and the last 3.
    assert_eq!(sent(&pool) - before, 18);
    let before = sent(&pool);
    let v: Vec<u64> = pool
        .map(square, (0..1000u64).filter(|_| true))
        .chunksize(100)
        .map(Result::unwrap)
        .collect();
    assert_eq!(v, expected);
    assert_eq!(sent(&pool) - before, 10, "unknown length: full chunks");
}

#[test]
fn map_unordered_chunked_gives_every_result_once() {
    let pool = pool(2);
    let mut v: Vec<u64> = pool
        .map_unordered(square, 0..1000u64)
        .chunksize(64)
        .map(Result::unwrap)
        .collect();
    v.sort_unstable();
    assert_eq!(v, (0..1000u64).map(|x| x * x).collect::<Vec<_>>());
    let failures = pool
        .map_unordered(panics_if_odd, 0..10u32)
        .chunksize(3)
        .filter(|r| r.as_ref().is_err_and(TaskError::is_panic))
        .count();
    assert_eq!(failures, 5, "a panic fails only its own item");
}

/// A held chunk does not hold back the chunks behind it.
#[test]
fn map_unordered_slow_chunk_does_not_block_others() {
    let pool = pool(2);
    assert_eq!(pool.wait_for_workers(NEVER), 2);
    let h = Holder::new();
    let mut it = pool
        .map_unordered(hold_or_pid, (0..5u32).map(|i| (i == 0).then(|| h.arg())))
        .lookahead(5);
    // Messages are spread over both workers as they are queued (the held one goes first, to
    // one worker; the other worker gets the next), so results arrive while item 0 is held.
    let first_two: Vec<u32> = (&mut it).take(2).map(Result::unwrap).collect();
    assert_eq!(first_two.len(), 2);
    h.wait_started();
    h.release();
    assert_eq!(it.map(Result::unwrap).count(), 3);
}

#[test]
fn map_timeout_ends_with_timed_out_and_cancels_the_rest() {
    let pool = pool(1);
    let h = Holder::new();
    let limit = Duration::from_millis(50);
    let out: Vec<Result<u32, TaskError>> = pool
        .map(hold_or_pid, (0..4u32).map(|i| (i == 0).then(|| h.arg())))
        .timeout(limit)
        .collect();
    assert_eq!(out, [Err(TaskError::TimedOut(limit))]);
    // The held item finishes in its worker (or was cancelled before it started); the items
    // behind it were cancelled, and the pool serves the next task.
    h.release();
    assert_serves(&pool);
}

#[test]
fn map_item_failures_stay_in_their_item() {
    let pool = pool(2);
    let got: Vec<Result<u32, TaskError>> = pool.map(panics_if_odd, 0..10u32).chunksize(4).collect();
    for (i, r) in got.iter().enumerate() {
        if i % 2 == 1 {
            assert_eq!(r, &Err(TaskError::panicked(format!("odd {i}"))));
        } else {
            assert_eq!(r, &Ok(i as u32));
        }
    }
    assert_serves(&pool);
}

fn panics_if_odd(x: u32) -> u32 {
    assert!(x.is_multiple_of(2), "odd {x}");
    x
}
