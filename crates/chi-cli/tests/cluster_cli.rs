//! `chi cluster` end to end against a Redis of the test's own: the demo (two `chi cluster
//! worker` processes, one killed holding a task) and `status --json`.

#[path = "../../chi-cluster/tests/common/mod.rs"]
mod common;

use common::RedisServer;
use std::process::Command;

#[test]
fn the_demo_recovers_a_task_from_a_killed_worker() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_chi"))
        .args(["cluster", "demo", "--redis", &redis.url()])
        .output()
        .expect("run chi cluster demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for word in ["POOL", "池", "CLUSTER"] {
        assert!(stdout.contains(&format!("  {word}\n")), "{stdout}");
    }
    let killed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("  killed worker pid "))
        .and_then(|l| l.split(' ').next())
        .expect("the demo kills a worker");
    let finished = stdout
        .lines()
        .find(|l| l.starts_with("  slept 1500 ms on worker pid "))
        .expect("the task finished elsewhere");
    assert!(!finished.contains(&format!("pid {killed};")), "{stdout}");
    assert!(finished.ends_with("deliveries retried: 1"), "{stdout}");

    let out = Command::new(env!("CARGO_BIN_EXE_chi"))
        .args(["cluster", "status", "--json", "--redis", &redis.url()])
        .output()
        .expect("run chi cluster status");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status is JSON");
    let queues = v.as_array().expect("an array of queues");
    assert_eq!(queues.len(), 1, "{v}");
    assert_eq!(queues[0]["depth"], 0, "{v}");
    assert!(queues[0]["queue"].as_str().unwrap().starts_with("demo-"));
}

#[test]
fn invalid_cluster_settings_exit_2() {
    let chi = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_chi"))
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run chi")
    };
    // Flags clap checks: the usage error names the flag.
    for (args, needle) in [
        (
            &["cluster", "worker", "--processes", "0"][..],
            "--processes",
        ),
        (&["cluster", "worker", "--threads", "many"], "--threads"),
        (&["cluster", "worker", "--heartbeat", "soon"], "--heartbeat"),
        (&["cluster", "worker", "--lease", "0"], "--lease"),
        (
            &["cluster", "worker", "--stop-grace", "1 fortnight"],
            "--stop-grace",
        ),
        (&["cluster", "status", "--json", "--frob"], "--frob"),
    ] {
        let out = chi(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // Settings the library refuses: one line, before anything connects or starts.
    for (args, needle) in [
        (
            &["cluster", "worker", "--redis", "localhost:6379"][..],
            "Redis URL",
        ),
        (
            &["cluster", "status", "--redis", "http://127.0.0.1:1"],
            "Redis URL",
        ),
        (&["cluster", "demo", "--redis", " , "], "no URL given"),
        (
            &["cluster", "worker", "--heartbeat", "1s", "--lease", "2s"],
            "more than twice the heartbeat",
        ),
    ] {
        let out = chi(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
