//! Building a pool.

use super::*;
use chi::BuildErrorKind;

#[test]
fn new_zero_workers_is_error() {
    let err = ThreadPool::new(0).unwrap_err();
    assert!(matches!(err.kind(), BuildErrorKind::ZeroWorkers), "{err:?}");
}

#[test]
fn queue_bound_zero_is_error() {
    let err = ThreadPool::builder().queue_bound(0).build().unwrap_err();
    assert!(
        matches!(err.kind(), BuildErrorKind::ZeroQueueBound),
        "{err:?}"
    );
}

#[test]
fn stack_size_zero_is_error() {
    let err = ThreadPool::builder().stack_size(0).build().unwrap_err();
    assert!(matches!(err.kind(), BuildErrorKind::Invalid(_)), "{err:?}");
}

#[test]
fn thread_name_nul_is_error() {
    let err = ThreadPool::builder()
        .thread_name("a\0b")
        .build()
        .unwrap_err();
    assert!(matches!(err.kind(), BuildErrorKind::Invalid(_)), "{err:?}");
}

#[test]
fn max_workers_default_is_available_parallelism() {
    let expected = thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(
        ThreadPool::builder().build().unwrap().max_workers(),
        expected
    );
}

#[test]
fn max_workers_set_is_reported() {
    assert_eq!(ThreadPool::new(3).unwrap().max_workers(), 3);
}

#[test]
fn thread_name_default_is_chi_worker_n() {
    let pool = ThreadPool::new(2).unwrap();
    let name = pool.submit(thread_name).unwrap().result().unwrap();
    let n = name
        .strip_prefix("chi-worker-")
        .unwrap_or_else(|| panic!("worker named {name:?}"));
    assert!(n.parse::<usize>().is_ok(), "worker named {name:?}");
}

#[test]
fn thread_name_custom_prefix() {
    let pool = ThreadPool::builder()
        .max_workers(2)
        .thread_name("render")
        .build()
        .unwrap();
    let name = pool.submit(thread_name).unwrap().result().unwrap();
    let n = name
        .strip_prefix("render-")
        .unwrap_or_else(|| panic!("worker named {name:?}"));
    assert!(n.parse::<usize>().is_ok(), "worker named {name:?}");
}

/// Uses more stack than a default thread has (2 MiB); without the setting this would
/// overflow and kill the process, so it runs in a child process of its own.
#[test]
fn stack_size_large_array_fits() {
    if run_alone("build::stack_size_large_array_fits") {
        return;
    }
    #[inline(never)]
    fn big_frame() -> u64 {
        let mut buf = [0u8; 8 << 20];
        std::hint::black_box(&mut buf);
        buf[12345] = 7;
        std::hint::black_box(&buf)
            .iter()
            .map(|&b| u64::from(b))
            .sum()
    }
    let pool = ThreadPool::builder()
        .max_workers(1)
        .stack_size(64 << 20)
        .build()
        .unwrap();
    assert_eq!(pool.submit(big_frame).unwrap().result(), Ok(7));
}
