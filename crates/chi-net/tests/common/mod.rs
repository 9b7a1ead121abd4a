//! Helpers for the server tests: a server on 127.0.0.1:0 in a thread, clients with generous
//! timeouts, and bounded waits. Every wait here is either huge (it must never fire) or
//! irrelevant to what the test asserts.
#![allow(dead_code, unreachable_pub)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chi_net::{
    AsciiUpper, Handler, Model, Server, ServerConfig, ServerConfigBuilder, ServerError,
    ServerHandle, ServerStats, ascii_upper,
};

/// A bound that must never be reached by a working server.
pub const LONG: Duration = Duration::from_secs(30);

/// A running server and the thread that runs it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
    done: mpsc::Receiver<Result<ServerStats, ServerError>>,
    thread: Option<JoinHandle<()>>,
}

/// Starts a server of `model` on 127.0.0.1:0 with test defaults (2 event loops), changed by `tweak`.
pub fn start(
    model: Model,
    tweak: impl FnOnce(ServerConfigBuilder) -> ServerConfigBuilder,
) -> TestServer {
    start_with(model, tweak, AsciiUpper)
}

/// As [`start`], answering with `handler`.
pub fn start_with<H: Handler>(
    model: Model,
    tweak: impl FnOnce(ServerConfigBuilder) -> ServerConfigBuilder,
    handler: H,
) -> TestServer {
    let mut builder = ServerConfig::builder()
        .addr("127.0.0.1:0".parse().unwrap())
        .model(model);
    if model != Model::Pooled {
        builder = builder.workers(2);
    }
    let config = tweak(builder).build().expect("valid test config");
    let server = Server::bind_with(config, handler).expect("bind 127.0.0.1:0");
    let addr = server.local_addr();
    let handle = server.handle();
    let (tx, done) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("test-server".into())
        .spawn(move || {
            let _ = tx.send(server.run());
        })
        .unwrap();
    TestServer {
        addr,
        handle,
        done,
        thread: Some(thread),
    }
}

impl TestServer {
    /// Graceful shutdown; returns the final stats.
    pub fn stop(mut self) -> ServerStats {
        self.handle.shutdown();
        self.wait()
    }

    /// Waits (bounded) for `run` to return after a shutdown was requested.
    pub fn wait(&mut self) -> ServerStats {
        let result = self
            .done
            .recv_timeout(LONG)
            .expect("server did not stop within the bound");
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        result.expect("server run failed")
    }

    /// Non-blocking: the server's result if `run` has returned.
    pub fn try_result(&self) -> Option<Result<ServerStats, ServerError>> {
        self.done.try_recv().ok()
    }

    /// Waits until the stats satisfy `cond`.
    pub fn wait_stats(
        &self,
        what: &str,
        mut cond: impl FnMut(&ServerStats) -> bool,
    ) -> ServerStats {
        let mut last = self.handle.stats();
        wait_until(what, || {
            last = self.handle.stats();
            cond(&last)
        });
        last
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.handle.shutdown_now();
            if self.done.recv_timeout(LONG).is_ok() {
                let _ = thread.join();
            }
        }
    }
}

/// Polls `cond` (with short pauses) until it holds; panics after [`LONG`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut pause = Duration::from_micros(100);
    while !cond() {
        assert!(start.elapsed() < LONG, "timed out waiting for: {what}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// A connected client with generous timeouts and Nagle off.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(LONG)).unwrap();
    stream.set_write_timeout(Some(LONG)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Sends `message`, reads its answer, checks it is the upper-cased message.
pub fn roundtrip(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).expect("send");
    let mut answer = vec![0; message.len()];
    stream.read_exact(&mut answer).expect("read the answer");
    assert_eq!(answer, ascii_upper(message));
}

/// Reads until end of stream; a reset also ends it (returned as the error).
pub fn read_to_end(mut stream: impl Read) -> (Vec<u8>, io::Result<()>) {
    let mut data = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (data, Ok(())),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (data, Err(e)),
        }
    }
}

/// Asserts the server closed the connection: end of stream or a reset, and no answer bytes.
pub fn expect_closed(stream: impl Read) {
    let (data, result) = read_to_end(stream);
    assert!(
        data.is_empty(),
        "expected no answer, got {} bytes",
        data.len()
    );
    if let Err(e) = result {
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
            ),
            "expected end of stream or reset, got {e}"
        );
    }
}

/// `len` bytes mixing lower-case letters with every other byte value.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            if i % 3 == 0 {
                b'a' + (i % 26) as u8
            } else {
                (i * 7 % 256) as u8
            }
        })
        .collect()
}

/// Writes `data` from a scoped thread while this thread reads the whole answer; returns it.
pub fn send_and_receive(stream: &TcpStream, data: &[u8]) -> Vec<u8> {
    std::thread::scope(|s| {
        let mut writer = stream;
        let sender = s.spawn(move || writer.write_all(data));
        let mut answer = vec![0; data.len()];
        let mut reader = stream;
        reader
            .read_exact(&mut answer)
            .expect("read the whole answer");
        sender.join().unwrap().expect("send");
        answer
    })
}

/// Defines `event::<case>`, `pooled::<case>` and, when chi-net is built with its `uring`
/// feature on Linux, `uring::<case>`, calling `<case>(Model::Event)` and so on. Cases listed
/// after `; event loops only:` run for the event and uring models alone (what the pooled
/// model does not have: idle timers, an output cap over many connections per thread). (Needs
/// `#[macro_use] mod common;` in the test file.)
#[allow(unused_macros)]
macro_rules! for_all_models {
    ($($case:ident),* $(,)? $(; event loops only: $($looped:ident),+ $(,)?)?) => {
        mod event {
            use super::*;
            $( #[test] fn $case() { super::$case(Model::Event) } )*
            $($( #[test] fn $looped() { super::$looped(Model::Event) } )+)?
        }
        mod pooled {
            use super::*;
            $( #[test] fn $case() { super::$case(Model::Pooled) } )*
        }
        #[cfg(all(feature = "uring", target_os = "linux"))]
        mod uring {
            use super::*;
            $( #[test] fn $case() { super::$case(Model::Uring) } )*
            $($( #[test] fn $looped() { super::$looped(Model::Uring) } )+)?
        }
    };
}
