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
