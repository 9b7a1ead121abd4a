//! The load generator against in-process servers: right servers give exact counts, wrong ones
//! (lower-casing, dropping a byte, closing mid-answer, not listening) give counted errors; and
//! the JSON report has exactly the documented fields and types.
//!
//! Every server binds 127.0.0.1:0. The only time limits that fire are those of the runs
//! against a server that never completes an answer, where the limit is what ends the run and
//! the counts do not depend on when it fires.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use chi_net::Model;
use chi_net::load::{
    self, End, LoadConfig, LoadConfigBuilder, LoadConfigErrorKind, LoadPhase, LoadReport, LoadRun,
    SCHEMA,
};
use common::{LONG, start, start_with, wait_until};

fn builder(
    addr: std::net::SocketAddr,
    connections: u64,
    messages: u64,
    size: usize,
) -> LoadConfigBuilder {
    LoadConfig::builder()
        .addr(addr)
        .connections(connections)
        .messages(Some(messages))
        .size(size)
        .threads(2)
        .reply_timeout(Some(LONG))
}

fn config(addr: std::net::SocketAddr, connections: u64, messages: u64, size: usize) -> LoadConfig {
    builder(addr, connections, messages, size).build().unwrap()
}

fn assert_accounted(report: &LoadReport) {
    let a = &report.answers;
    assert_eq!(
        a.ok + a.wrong + a.short + a.missing + a.in_flight,
        a.expected,
        "answers must add up: {a:?}"
    );
    assert_eq!(report.errors, a.wrong + a.short + a.missing);
}

// ===== right servers =====

#[test]
fn load_event_server_counts_every_answer() {
    let server = start(Model::Event, |b| b);
    let cfg = builder(server.addr, 8, 200, 100).warmup(5).idle(300);
    let report = load::run(cfg.build().unwrap()).unwrap();
    assert_accounted(&report);
    assert!(report.passed(), "{report}");
    assert_eq!(report.end, End::Completed);
    assert_eq!(report.answers.expected, 8 * 205);
    assert_eq!(report.answers.ok, 8 * 205);
    assert_eq!(report.messages, 8 * 200);
    assert_eq!(report.latency_us.count, 8 * 200);
    assert!(report.latency_us.min <= report.latency_us.p50);
    assert!(report.latency_us.p50 <= report.latency_us.p99_9);
    assert!(report.latency_us.p99_9 <= report.latency_us.max);
    assert!(report.msgs_per_s > 0.0 && report.mb_per_s > 0.0);
    assert!(report.first_answer_ms.min <= report.first_answer_ms.max);
    assert_eq!((report.connected, report.connect_failed), (8, 0));
    assert_eq!(
        (
            report.idle_connected,
            report.idle_failed,
            report.idle_closed
        ),
        (300, 0, 0)
    );
    assert_eq!(report.connect_error, None);
    let stats = server.stop();
    assert_eq!(stats.accepted, 308);
    assert_eq!(stats.bytes_in, 8 * 205 * 100);
}

#[test]
fn load_pooled_server_serves_more_clients_than_workers_in_turn() {
    // 2 workers, 5 clients: each client closes when done, so the waiting ones get a worker.
    let server = start(Model::Pooled, |b| b.workers(2));
    let report = load::run(config(server.addr, 5, 50, 11)).unwrap();
    assert_accounted(&report);
    assert!(report.passed(), "{report}");
    assert_eq!(report.messages, 250);
    server.stop();
}

#[test]
fn load_large_messages_stream_through() {
    // 1 MiB messages exceed the socket buffers: writing and reading must interleave.
    let server = start(Model::Event, |b| b);
    let report = load::run(config(server.addr, 2, 3, 1 << 20)).unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!(report.messages, 6);
    assert!(report.mb_per_s > 0.0);
    server.stop();
}

#[test]
fn load_threads_are_capped_at_connections() {
    let server = start(Model::Event, |b| b);
    let cfg = builder(server.addr, 1, 10, 8).threads(4);
    let report = load::run(cfg.build().unwrap()).unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!(report.threads, 1);
    server.stop();
}

// ===== wrong servers =====

#[test]
fn load_lowercasing_server_gives_wrong_answers() {
    let lower = |input: &[u8], output: &mut Vec<u8>| {
        output.extend(input.iter().map(u8::to_ascii_lowercase));
    };
    let server = start_with(Model::Event, |b| b, lower);
    let report = load::run(config(server.addr, 3, 10, 64)).unwrap();
    assert_accounted(&report);
    assert!(!report.passed());
    assert_eq!(report.end, End::Completed);
    assert_eq!(report.answers.wrong, 30);
    assert_eq!(report.answers.ok, 0);
    assert_eq!(report.messages, 0);
    assert_eq!(report.latency_us.count, 0);
    server.stop();
}

#[test]
fn load_identity_server_gives_wrong_answers() {
    // An echo that forgets to upper-case: the requests carry lower-case letters.
    let echo = |input: &[u8], output: &mut Vec<u8>| output.extend_from_slice(input);
    let server = start_with(Model::Event, |b| b, echo);
    let report = load::run(config(server.addr, 2, 5, 11)).unwrap();
    assert_eq!(report.answers.wrong, 10);
    assert!(!report.passed());
    server.stop();
}

#[test]
fn load_byte_dropping_server_gives_short_answers_at_the_reply_timeout() {
    // Each answer lacks its last byte, so each client waits for it until the reply timeout.
    let drop_last = |input: &[u8], output: &mut Vec<u8>| {
        let keep = input.len().saturating_sub(1);
        output.extend(input[..keep].iter().map(u8::to_ascii_uppercase));
    };
    let server = start_with(Model::Event, |b| b, drop_last);
    let cfg = builder(server.addr, 3, 4, 64).reply_timeout(Some(Duration::from_millis(300)));
    let report = load::run(cfg.build().unwrap()).unwrap();
    assert_accounted(&report);
    assert!(!report.passed());
    assert_eq!(report.end, End::Completed);
    assert_eq!(report.timed_out, 3);
    assert_eq!(report.answers.short, 3);
    assert_eq!(report.answers.missing, 3 * 3);
    assert_eq!(report.answers.ok, 0);
    server.stop();
}

#[test]
fn load_server_closing_mid_answer_gives_short_and_missing() {
    // A raw server: for each of 2 connections, read one request, answer half of it, close.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let size = 40;
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(LONG)).unwrap();
            let mut request = vec![0; size];
            stream.read_exact(&mut request).unwrap();
            let answer = chi_net::ascii_upper(&request);
            stream.write_all(&answer[..size / 2]).unwrap();
        }
    });
    let cfg = builder(addr, 2, 5, size).threads(1);
    let report = load::run(cfg.build().unwrap()).unwrap();
    server.join().unwrap();
    assert_accounted(&report);
    assert_eq!(report.end, End::Completed);
    assert_eq!(report.answers.short, 2);
    assert_eq!(report.answers.missing, 2 * 4);
    assert!(!report.passed());
}

#[test]
fn load_refused_connections_are_counted() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }; // closed: connecting is refused
    let cfg = builder(addr, 3, 5, 8).idle(2);
    let report = load::run(cfg.build().unwrap()).unwrap();
    assert_accounted(&report);
    assert!(!report.passed());
    assert_eq!((report.connected, report.connect_failed), (0, 3));
    assert_eq!((report.idle_connected, report.idle_failed), (0, 2));
    assert_eq!(report.answers.missing, 15);
    let err = report.connect_error.expect("a connect error is reported");
    assert!(err.contains(&addr.to_string()), "{err}");
}

// ===== idle connections =====

#[test]
fn load_idle_only_holds_until_stopped() {
    let server = start(Model::Event, |b| b);
    let cfg = builder(server.addr, 0, 1, 1).idle(50);
    let run = LoadRun::start(cfg.build().unwrap()).unwrap();
    wait_until("all idle connections held", || {
        let p = run.progress();
        p.phase == LoadPhase::Holding && p.idle_connected == 50
    });
    server.wait_stats("the server sees them", |s| s.open == 50);
    assert!(!run.wait_timeout(Duration::ZERO), "holds until stopped");
    run.stop_handle().stop();
    let report = run.wait().unwrap();
    assert_eq!(report.end, End::Interrupted);
    assert_eq!(report.idle_connected, 50);
    assert_eq!(report.answers.expected, 0);
    assert!(report.passed(), "{report}");
    let stats = server.stop();
    assert_eq!(stats.accepted, 50);
}

#[test]
fn load_idle_closed_by_server_is_counted() {
    let server = start(Model::Event, |b| {
        b.idle_timeout(Some(Duration::from_millis(20)))
    });
    let cfg = builder(server.addr, 0, 1, 1).idle(10);
    let run = LoadRun::start(cfg.build().unwrap()).unwrap();
    server.wait_stats("the server closes the idle clients", |s| s.closed == 10);
    run.stop_handle().stop();
    let report = run.wait().unwrap();
    assert_eq!(report.idle_closed, 10);
    server.stop();
}

#[test]
fn load_fd_limit_too_small_is_a_clear_error() {
    let cfg = builder("127.0.0.1:9".parse().unwrap(), 1, 1, 1).idle(1 << 40);
    let err = LoadRun::start(cfg.build().unwrap()).unwrap_err();
    assert!(matches!(err, load::LoadError::FdLimit { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("file descriptors") && msg.contains("ulimit -Hn"),
        "{msg}"
    );
}

#[test]
fn load_invalid_config_is_rejected() {
    let addr = "127.0.0.1:9".parse().unwrap();
    let err = builder(addr, 0, 1, 1).build().unwrap_err();
    assert_eq!(err.kind(), &LoadConfigErrorKind::NothingToDo);
    let err = builder(addr, 1, 1, 0).build().unwrap_err();
    assert_eq!(err.kind(), &LoadConfigErrorKind::ZeroSize);
}

// ===== timed and open-loop runs =====

#[test]
fn load_timed_run_ends_cleanly_with_answers_in_flight_not_missing() {
    let server = start(Model::Event, |b| b);
    let cfg = builder(server.addr, 3, 1, 32)
        .messages(None)
        .duration(Some(Duration::from_millis(300)));
    let report = load::run(cfg.build().unwrap()).unwrap();
    assert_accounted(&report);
    assert_eq!(report.end, End::Duration);
    assert!(report.passed(), "{report}");
    assert_eq!(report.messages_per_connection, None);
    assert!(report.answers.ok > 0, "{report}");
    assert!(report.answers.in_flight <= 3, "{report}");
    assert_eq!(report.errors, 0);
    server.stop();
}

#[test]
fn load_open_loop_counts_latency_from_the_intended_send_time() {
    // One connection, one message due every millisecond; the server stalls 200 ms on the
    // first answer. Closed-loop timing would hide the stall in one sample; measured from the
    // intended times, every message due during the stall waited for it, so the median is at
    // least 100 ms whatever the machine's speed.
    let stalled = std::sync::atomic::AtomicBool::new(false);
    let stall = move |input: &[u8], output: &mut Vec<u8>| {
        // ORDERING: one flag, read and set by the handler's own thread only.
        if !stalled.swap(true, std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
        }
        output.extend(input.iter().map(u8::to_ascii_uppercase));
    };
    let server = start_with(Model::Pooled, |b| b.workers(1), stall);
    let cfg = builder(server.addr, 1, 100, 16)
        .threads(1)
        .rate(Some(1_000));
    let report = load::run(cfg.build().unwrap()).unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!(report.rate, Some(1_000));
    assert!(report.latency_us.p50 >= 100_000.0, "{report}");
    server.stop();
}

#[test]
fn load_interval_histograms_hold_every_measured_answer() {
    let server = start(Model::Event, |b| b);
    let run = LoadRun::start(
        builder(server.addr, 2, 50, 16)
            .record_intervals(true)
            .build()
            .unwrap(),
    )
    .unwrap();
    assert!(run.wait_timeout(LONG), "the run ends");
    let interval = run.take_interval().expect("intervals were asked for");
    assert_eq!(interval.len(), 100);
    assert!(run.take_interval().unwrap().is_empty(), "taken once");
    let report = run.wait().unwrap();
    assert_eq!(report.latency_us.count, 100);
    server.stop();
}

// ===== the JSON schema =====

/// The rows `| `field` | type | meaning |` of the schema table in the `load` module docs.
fn documented_fields() -> BTreeMap<String, String> {
    let source = include_str!("../src/load/mod.rs");
    let table = source
        .split("# JSON schema")
        .nth(1)
        .expect("the module docs have a JSON schema section");
    table
        .lines()
        .skip(1) // the rest of the heading's line
        .map_while(|l| l.strip_prefix("//!"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((name.to_owned(), cells.get(2)?.to_string()))
        })
        .collect()
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(n) if n.is_u64() => "integer",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

fn check_against_docs(value: &serde_json::Value) {
    let docs = documented_fields();
    let object = value.as_object().expect("the report is one JSON object");
    let keys: Vec<&String> = object.keys().collect();
    let documented: Vec<&String> = docs.keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        sorted, documented,
        "JSON fields differ from the documented ones"
    );
    for (name, ty) in &docs {
        let got = json_type(&object[name]);
        let ok = match ty.as_str() {
            "integer" => got == "integer",
            // A float that happens to be whole is still written with a fraction by serde_json.
            "number" => got == "number",
            "string" => got == "string",
            "object" => got == "object",
            "number or null" => got == "number" || got == "null",
            "integer or null" => got == "integer" || got == "null",
            "string or null" => got == "string" || got == "null",
            other => panic!("unknown documented type {other:?} for {name}"),
        };
        assert!(ok, "`{name}` is documented as {ty} but is {got}");
    }
    let answers = object["answers"].as_object().unwrap();
    for key in ["expected", "ok", "wrong", "short", "missing", "in_flight"] {
        assert!(answers[key].is_u64(), "answers.{key}");
    }
    assert_eq!(answers.len(), 6);
    let latency = object["latency_us"].as_object().unwrap();
    assert!(latency["count"].is_u64());
    for key in ["min", "mean", "p50", "p90", "p99", "p99_9", "max"] {
        assert!(latency[key].is_f64(), "latency_us.{key}");
    }
    assert_eq!(latency.len(), 8);
    let first = object["first_answer_ms"].as_object().unwrap();
    assert!(first["min"].is_f64() && first["max"].is_f64());
    assert_eq!(first.len(), 2);
    assert_eq!(object["schema"], SCHEMA);
    assert!(
        ["completed", "duration", "interrupted"].contains(&object["end"].as_str().unwrap()),
        "end"
    );
}

#[test]
fn load_report_json_has_the_documented_fields_and_types() {
    let server = start(Model::Event, |b| b);
    let report = load::run(config(server.addr, 2, 20, 16)).unwrap();
    let json = report.to_json();
    assert!(!json.contains('\n'), "one line");
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    check_against_docs(&value);
    assert_eq!(value["connections"], 2);
    assert_eq!(value["messages"], 40);
    // Back from JSON: the counts exactly, the floats to within parsing precision (serde_json
    // does not promise bit-exact float round trips by default).
    let back = LoadReport::from_json(&json).unwrap();
    assert_eq!(back.answers, report.answers);
    assert_eq!((back.messages, back.end), (report.messages, report.end));
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
    assert!(close(back.latency_us.mean, report.latency_us.mean));
    assert!(close(back.msgs_per_s, report.msgs_per_s));
    server.stop();
}

#[test]
fn load_report_json_of_a_failed_run_keeps_the_schema() {
    // Nulls and zeros where nothing was measured, a string where a connect failed.
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let report = load::run(config(addr, 1, 1, 1)).unwrap();
    let value: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    check_against_docs(&value);
    assert!(value["connect_error"].is_string());
}

#[test]
fn load_report_sample_file_parses() {
    let sample = include_str!("data/load_report.json");
    let value: serde_json::Value = serde_json::from_str(sample).unwrap();
    check_against_docs(&value);
    assert!(LoadReport::from_json(sample).unwrap().passed());
    assert!(LoadReport::from_json("{\"schema\":\"chi-load/1\"}").is_err());
}
