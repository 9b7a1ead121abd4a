//! Shutdown, drop and parent death (cases 12-13): every task gets an outcome, every worker
//! ends, nothing is left behind.

use super::*;

/// Case 12a: Shutdown while workers are crashing returns, and every task has an outcome.
#[test]
fn fault_shutdown_while_workers_crash() {
    let pool = pool(2);
    let mut tasks = Vec::new();
    for i in 0..12 {
        tasks.push(if i % 3 == 0 {
            pool.submit(exits, 1).unwrap()
        } else {
            pool.submit(pid, ()).unwrap()
        });
    }
    let pool = std::sync::Arc::new(pool);
    let p = pool.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        p.shutdown();
        let _ = tx.send(());
    });
    rx.recv_timeout(NEVER).expect("shutdown returned");
    for (i, t) in tasks.into_iter().enumerate() {
        match get(t) {
            Ok(_) => assert!(i % 3 != 0),
            Err(TaskError::WorkerDied(ExitReason::Code(1))) => assert!(i % 3 == 0),
            other => panic!("task {i}: {other:?}"),
        }
    }
    assert!(pool.worker_pids().is_empty());
}

/// Case 12b: Dropping the pool while tasks run waits for them and ends every worker.
#[test]
fn fault_drop_while_tasks_run() {
    let pool = pool(2);
    let tasks: Vec<_> = (0..6)
        .map(|_| pool.submit(sleeps_ms, 20).unwrap())
        .collect();
    let pids = pool.worker_pids();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(pool);
        let _ = tx.send(());
    });
    rx.recv_timeout(NEVER).expect("drop returned");
    for t in tasks {
        assert_eq!(get(t), Ok(20));
    }
    for p in pids {
        assert!(!proc::alive(p), "worker {p} outlived its pool");
        assert_ne!(
            proc::ppid(p),
            Some(std::process::id()),
            "worker {p} was not reaped"
        );
    }
}

/// 12c. The pool's process is killed: every worker exits (parent-death signal, EOF).
#[test]
fn fault_parent_killed_ends_every_worker() {
    const OWNER: &str = "CHI_TEST_POOL_OWNER";
    if std::env::var_os(OWNER).is_some() {
        let pool = pool(2);
        poll_until("both workers up", || pool.worker_pids().len() == 2);
        println!("PIDS {:?}", pool.worker_pids());
        use std::io::Write;
        std::io::stdout().flush().unwrap();
        loop {
            std::thread::park();
        }
    }
    /// Kills the owner process on every path, so a failing assertion leaks nothing.
    struct Owner(std::process::Child);
    impl Drop for Owner {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let exe = std::env::current_exe().unwrap();
    let mut owner = Owner(
        std::process::Command::new(exe)
            .args([
                "lifecycle::fault_parent_killed_ends_every_worker",
                "--exact",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(OWNER, "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = owner.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            // The harness prints "test <name> ... " without a newline before the test's output.
            if let Some(at) = line.find("PIDS ") {
                let _ = tx.send(line[at + 5..].to_string());
            }
        }
    });
    let line = rx.recv_timeout(NEVER).expect("the owner's worker pids");
    let pids: Vec<u32> = line
        .trim()
        .trim_matches(['[', ']'])
        .split(", ")
        .map(|s| s.parse().expect("a pid"))
        .collect();
    assert_eq!(pids.len(), 2);
    drop(owner); // SIGKILL: no destructor, no shutdown, nothing of chi's runs in it
    for p in pids {
        poll_until(&format!("orphaned worker {p} to exit"), || !proc::alive(p));
    }
}

/// Case 13: After drop: no zombie or live children, no leaked descriptors, and the pool's sockets
/// are close-on-exec in the parent and in the worker. Alone in its process, so that counts
/// are exact.
#[test]
fn fault_drop_leaves_no_zombies_or_descriptors() {
    const ALONE: &str = "CHI_TEST_PP_ALONE";
    if std::env::var_os(ALONE).is_none() {
        let run = proc::run_test_child(
            "lifecycle::fault_drop_leaves_no_zombies_or_descriptors",
            &[(ALONE, "1")],
        );
        assert!(
            run.success,
            "alone run failed:\n{}\n{}",
            run.stdout, run.stderr
        );
        return;
    }
    let me = std::process::id();
    let fds_before = proc::open_fds();
    {
        let pool = ProcessPool::builder()
            .max_workers(2)
            .task_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        assert_serves(&pool);
        poll_until("both workers up", || pool.worker_pids().len() == 2);
        // The pool's sockets in this process are close-on-exec...
        let sockets: Vec<i32> = proc::open_fds()
            .into_iter()
            .filter(|(_, t)| t.starts_with("socket:"))
            .map(|(fd, _)| fd)
            .collect();
        assert!(sockets.len() >= 2, "{sockets:?}");
        for fd in sockets {
            assert!(
                proc::cloexec(fd),
                "parent socket fd {fd} is not close-on-exec"
            );
        }
        // ...and so is the worker's end, once the worker runs.
        let flags = get(pool.submit(worker_socket_flags, ()).unwrap()).unwrap();
        assert!(!flags.is_empty());
        assert!(flags.iter().all(|&(_, c)| c), "worker sockets: {flags:?}");
        // Crashes, a timeout, recycling: every path that replaces a worker.
        assert!(get(pool.submit(exits, 2).unwrap()).is_err());
        assert!(get(pool.submit(aborts, ()).unwrap()).is_err());
        let h = Holder::new();
        assert!(matches!(
            get(pool.submit(hold, h.arg()).unwrap()),
            Err(TaskError::TimedOut(_))
        ));
        h.gone();
        assert_serves(&pool);
        assert!(!proc::children_of(me).is_empty());
    }
    let left = proc::children_of(me);
    assert!(
        left.is_empty(),
        "children after drop (zombies are 'Z'): {left:?}"
    );
    assert_eq!(proc::open_fds(), fds_before, "descriptors leaked");
}
