//! The seed's client loop against a real server, and its errors when the server is absent or leaves.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

use chi_net::{
    Client, ClientConfig, ClientConfigBuilder, ClientConfigErrorKind, ClientError, Model, client,
};
use common::*;

fn builder(addr: std::net::SocketAddr, count: u64) -> ClientConfigBuilder {
    ClientConfig::builder()
        .addr(addr.to_string())
        .count(Some(count))
        .interval(Duration::ZERO)
}

fn config(addr: std::net::SocketAddr, count: u64) -> ClientConfig {
    builder(addr, count).build().unwrap()
}

#[test]
fn client_prints_each_answer_on_its_own_line() {
    for model in [Model::Event, Model::Pooled] {
        let server = start(model, |b| b);
        let mut out = Vec::new();
        let summary = client::run(&config(server.addr, 3), &mut out).unwrap();
        assert_eq!(summary.exchanges, 3);
        assert_eq!(String::from_utf8(out).unwrap(), "HELLO WORLD\n".repeat(3));
        server.stop();
    }
}

#[test]
fn client_shows_invalid_utf8_as_replacement() {
    let server = start(Model::Event, |b| b);
    let config = builder(server.addr, 1)
        .message(b"caf\xe9".to_vec())
        .build()
        .unwrap();
    let mut out = Vec::new();
    client::run(&config, &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "CAF\u{fffd}\n");
    server.stop();
}

#[test]
fn client_server_down_is_connect_error() {
    // Bound but not listening: connections are refused, and no other test can take the port.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let err = client::run(&config(addr, 1), &mut Vec::new()).unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("cannot connect to {addr}")),
        "{message}"
    );
}

#[test]
fn client_server_leaving_is_an_error_not_a_loop() {
    // A "server" that accepts, reads one message, and closes without answering.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let _ = conn.read(&mut [0; 64]);
    });
    let config = builder(addr, 1)
        .count(None) // forever: only the error can end it
        .build()
        .unwrap();
    let err = client::run(&config, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::ServerClosed { .. } | ClientError::Connection { .. }
        ),
        "{err:?}"
    );
    server.join().unwrap();
}

#[test]
fn client_reply_timeout_reports_silence() {
    // Accepts and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let config = builder(addr, 1)
        .reply_timeout(Some(Duration::from_millis(50)))
        .build()
        .unwrap();
    let err = client::run(&config, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    drop(listener);
}

#[test]
fn client_empty_message_is_rejected() {
    let err = ClientConfig::builder()
        .message(Vec::new())
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), &ClientConfigErrorKind::EmptyMessage);
    let err = ClientConfig::builder().count(Some(0)).build().unwrap_err();
    assert_eq!(err.kind(), &ClientConfigErrorKind::ZeroCount);
}

#[test]
fn client_exchange_reads_exactly_the_answer() {
    let server = start(Model::Pooled, |b| b);
    let mut client = Client::connect(&server.addr.to_string(), LONG).unwrap();
    assert_eq!(client.peer_addr(), server.addr);
    for message in [&b"a"[..], b"hello world", &pattern(100_000)] {
        let answer = client.exchange(message, Some(LONG)).unwrap();
        assert_eq!(answer, chi_net::ascii_upper(message));
    }
    drop(client);
    server.stop();
}

#[test]
fn client_unresolvable_host_is_resolve_error() {
    let config = ClientConfig::builder()
        .addr("no port here")
        .build()
        .unwrap();
    let err = client::run(&config, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, ClientError::Resolve { .. }), "{err:?}");
}
