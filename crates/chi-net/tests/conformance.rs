//! The protocol and connection handling, case by case, for every model: each case runs as
//! `event::<case>`, `pooled::<case>` and (with the `uring` feature) `uring::<case>`.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Barrier;
use std::time::Duration;

use chi_net::{Model, READ_CHUNK, ascii_upper};
use common::*;
use proptest::prelude::*;

fn bytes_all_256_values(model: Model) {
    let server = start(model, |b| b);
    let mut client = connect(server.addr);
    let all: Vec<u8> = (0..=255).collect();
    roundtrip(&mut client, &all);
    // Invalid UTF-8 and Latin-1 letters pass through; only a..z change.
    roundtrip(&mut client, b"\xff\xfe caf\xc3\xa9 \xe9t\xe9 \x00abc\x80");
    drop(client);
    server.stop();
}

fn message_of_one_mib(model: Model) {
    let server = start(model, |b| b);
    let client = connect(server.addr);
    let message = pattern(1 << 20);
    assert_eq!(send_and_receive(&client, &message), ascii_upper(&message));
    drop(client);
    let stats = server.stop();
    assert_eq!(stats.bytes_in, 1 << 20);
    assert_eq!(stats.bytes_out, 1 << 20);
}

fn message_split_into_one_byte_writes(model: Model) {
    let server = start(model, |b| b);
    let mut client = connect(server.addr);
    let message = b"hello world, one byte at a time \xf0\x9f\x98\x80";
    for byte in message {
        client.write_all(std::slice::from_ref(byte)).unwrap();
    }
    let mut answer = vec![0; message.len()];
    client.read_exact(&mut answer).unwrap();
    assert_eq!(answer, ascii_upper(message));
    drop(client);
    server.stop();
}

fn messages_pipelined_before_reading(model: Model) {
    let server = start(model, |b| b);
    let client = connect(server.addr);
    let mut all = Vec::new();
    for i in 0..2_000 {
        all.extend_from_slice(format!("message number {i}\n").as_bytes());
    }
    // Every message is written before any answer is read (from another thread, so a full
    // socket buffer cannot deadlock the test).
    assert_eq!(send_and_receive(&client, &all), ascii_upper(&all));
    drop(client);
    server.stop();
}

fn half_close_with_pending_output(model: Model) {
    let server = start(model, |b| b.output_cap(16 * 1024));
    let client = connect(server.addr);
    let message = pattern(3 << 20);
    std::thread::scope(|s| {
        let mut writer = &client;
        let message = &message;
        s.spawn(move || {
            writer.write_all(message).unwrap();
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let (answer, end) = read_to_end(&client);
        end.expect("the server closes cleanly after the last answer");
        assert_eq!(answer.len(), message.len());
        assert!(answer == ascii_upper(message));
    });
    let stats = server.wait_stats("connection closed", |s| s.closed == 1);
    assert_eq!(stats.forced, 0);
    server.stop();
}

/// The FIN travels with (or right behind) the last message: the server must still see the end
/// of stream, though its read of the message is short. Sent before the server has accepted the
/// connection (data and FIN in the socket when it registers) and after a round trip (FIN on a
/// served connection), many times each.
fn message_and_fin_together(model: Model) {
    let server = start(model, |b| b);
    for i in 0..100u32 {
        let message = format!("last words {i}");
        let mut client = connect(server.addr);
        if i % 2 == 1 {
            roundtrip(&mut client, b"warm");
        }
        client.write_all(message.as_bytes()).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let (answer, end) = read_to_end(&client);
        end.unwrap_or_else(|e| panic!("connection {i}: no clean close after the answer: {e}"));
        assert_eq!(answer, ascii_upper(message.as_bytes()), "connection {i}");
    }
    let stats = server.wait_stats("all closed", |s| s.closed == 100);
    assert_eq!(stats.forced, 0);
    server.stop();
}

/// An urgent (out-of-band) byte between ordinary ones: it is answered in place like any other
/// byte, and the bytes behind the urgent mark are answered too (a read stops short at the mark
/// with data still queued, so a short read alone does not mean the queue is empty).
fn urgent_byte_answered_in_place(model: Model) {
    let server = start(model, |b| b);
    for i in 0..40u32 {
        let mut client = connect(server.addr);
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.write_all(b"abc").unwrap();
        socket2::SockRef::from(&client)
            .send_out_of_band(b"x")
            .unwrap();
        client.write_all(b"def").unwrap();
        let mut answer = [0; 7];
        client
            .read_exact(&mut answer)
            .unwrap_or_else(|e| panic!("connection {i}: answer incomplete: {e}"));
        assert_eq!(&answer, b"ABCXDEF", "connection {i}");
    }
    server.stop();
}

fn client_reset_mid_stream(model: Model) {
    let server = start(model, |b| b);
    let mut doomed = connect(server.addr);
    roundtrip(&mut doomed, b"first");
    doomed.write_all(&pattern(200 * 1024)).unwrap();
    // Linger 0: close sends RST instead of FIN.
    socket2::SockRef::from(&doomed)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(doomed);
    server.wait_stats("reset connection closed", |s| s.closed == 1 && s.open == 0);
    let mut other = connect(server.addr);
    roundtrip(&mut other, b"still serving");
    drop(other);
    server.stop();
}

fn slow_reader_bounded_and_others_served(model: Model) {
    const CAP: usize = 64 * 1024;
    const TOTAL: usize = 16 << 20;
    let server = start(model, |b| b.output_cap(CAP));
    // A small receive buffer keeps the kernel from absorbing the answers for the slow reader.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(32 * 1024).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let slow: TcpStream = socket.into();
    slow.set_read_timeout(Some(LONG)).unwrap();
    let message = pattern(TOTAL);
    std::thread::scope(|s| {
        let mut writer = &slow;
        let message = &message;
        let sender = s.spawn(move || writer.write_all(message));
        // While the slow client reads nothing, another client is served.
        let mut other = connect(server.addr);
        for i in 0..20 {
            roundtrip(&mut other, format!("ping {i}").as_bytes());
        }
        drop(other);
        // Now the slow client reads everything, and every byte is right.
        let mut answer = vec![0; TOTAL];
        (&slow).read_exact(&mut answer).unwrap();
        sender.join().unwrap().unwrap();
        assert!(answer == ascii_upper(message));
    });
    drop(slow);
    let stats = server.stop();
    let bound = match model {
        Model::Event | Model::Uring => CAP + READ_CHUNK,
        _ => READ_CHUNK,
    };
    assert!(
        stats.peak_output_buffer <= bound,
        "peak unsent output {} over the bound {bound}",
        stats.peak_output_buffer
    );
}

fn clients_200_concurrent(model: Model) {
    const CLIENTS: usize = 200;
    let server = start(model, |b| {
        if model == Model::Pooled {
            b.workers(16)
        } else {
            b
        }
    });
    let barrier = Barrier::new(CLIENTS);
    std::thread::scope(|s| {
        for c in 0..CLIENTS {
            let barrier = &barrier;
            let addr = server.addr;
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn_scoped(s, move || {
                    let mut client = connect(addr);
                    barrier.wait(); // all 200 connected at once
                    for i in 0..5 {
                        roundtrip(&mut client, format!("client {c} message {i}").as_bytes());
                    }
                })
                .unwrap();
        }
    });
    let stats = server.stop();
    assert_eq!(stats.accepted, CLIENTS as u64);
    assert_eq!(stats.rejected, 0);
}

fn connect_disconnect_2000_cycles(model: Model) {
    let server = start(model, |b| b);
    for i in 0..2_000 {
        let mut client = connect(server.addr);
        if i % 2 == 0 {
            roundtrip(&mut client, b"x");
        }
    }
    let stats = server.wait_stats("all cycles closed", |s| s.closed == 2_000);
    assert_eq!(stats.open, 0);
    let mut client = connect(server.addr);
    roundtrip(&mut client, b"after the churn");
    drop(client);
    server.stop();
}

fn seed_client_send_then_recv(model: Model) {
    // What the seed's Python client does: send, then one recv(1024), every time.
    let server = start(model, |b| b);
    let mut client = connect(server.addr);
    for _ in 0..5 {
        client.write_all(b"hello world").unwrap();
        let mut buf = [0; 1024];
        let mut got = 0;
        while got < 11 {
            let n = client.read(&mut buf[got..]).unwrap();
            assert!(n > 0, "server closed");
            got += n;
        }
        assert_eq!(&buf[..got], b"HELLO WORLD");
    }
    drop(client);
    server.stop();
}

fn handler_panic_ends_only_its_connection(model: Model) {
    let handler = |input: &[u8], output: &mut Vec<u8>| {
        if input.contains(&b'!') {
            panic!("test handler refuses '!'");
        }
        output.extend_from_slice(input);
    };
    let server = start_with(model, |b| b, handler);
    let mut victim = connect(server.addr);
    victim.write_all(b"boom!").unwrap();
    expect_closed(&mut victim);
    let mut other = connect(server.addr);
    other.write_all(b"fine").unwrap();
    let mut answer = [0; 4];
    other.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"fine");
    drop(other);
    server.stop();
}

/// One proptest case: `data` written in the pieces `cuts` makes, answer read in full.
fn split_writes_answer_equals_upper(model: Model, data: &[u8], cuts: &[usize]) -> Vec<u8> {
    let server = start(model, |b| b);
    let client = connect(server.addr);
    let answer = std::thread::scope(|s| {
        let mut writer = &client;
        s.spawn(move || {
            let mut start = 0;
            for &cut in cuts.iter().chain([&data.len()]) {
                writer.write_all(&data[start..cut]).unwrap();
                start = cut;
            }
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let mut reader = &client;
        let mut answer = Vec::new();
        reader.read_to_end(&mut answer).unwrap();
        answer
    });
    drop(client);
    server.stop();
    answer
}

fn random_splits_strategy() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    proptest::collection::vec(any::<u8>(), 0..4096).prop_flat_map(|data| {
        let len = data.len();
        let cuts = proptest::collection::vec(0..=len, 0..12).prop_map(|mut c| {
            c.sort_unstable();
            c
        });
        (Just(data), cuts)
    })
}

macro_rules! for_all_models {
    ($($case:ident),* $(,)?) => {
        mod event {
            use super::*;
            $( #[test] fn $case() { super::$case(Model::Event) } )*
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(24))]
                #[test]
                fn random_splits_answer_equals_bytes_upper((data, cuts) in random_splits_strategy()) {
                    prop_assert_eq!(split_writes_answer_equals_upper(Model::Event, &data, &cuts), ascii_upper(&data));
                }
            }
        }
        mod pooled {
            use super::*;
            $( #[test] fn $case() { super::$case(Model::Pooled) } )*
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(24))]
                #[test]
                fn random_splits_answer_equals_bytes_upper((data, cuts) in random_splits_strategy()) {
                    prop_assert_eq!(split_writes_answer_equals_upper(Model::Pooled, &data, &cuts), ascii_upper(&data));
                }
            }
        }
        #[cfg(all(feature = "uring", target_os = "linux"))]
        mod uring {
            use super::*;
            $( #[test] fn $case() { super::$case(Model::Uring) } )*
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(24))]
                #[test]
                fn random_splits_answer_equals_bytes_upper((data, cuts) in random_splits_strategy()) {
                    prop_assert_eq!(split_writes_answer_equals_upper(Model::Uring, &data, &cuts), ascii_upper(&data));
                }
            }
        }
    };
}

for_all_models!(
    bytes_all_256_values,
    message_of_one_mib,
    message_split_into_one_byte_writes,
    messages_pipelined_before_reading,
    half_close_with_pending_output,
    message_and_fin_together,
    urgent_byte_answered_in_place,
    client_reset_mid_stream,
    slow_reader_bounded_and_others_served,
    clients_200_concurrent,
    connect_disconnect_2000_cycles,
    seed_client_send_then_recv,
    handler_panic_ends_only_its_connection,
);
