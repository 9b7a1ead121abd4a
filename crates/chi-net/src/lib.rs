//! chi-net: a TCP server whose concurrency a chi pool bounds, its client, and a load generator.
//!
//! The classic thread-pool upper-casing server, in Rust: clients connect to `127.0.0.1:8080` and every byte they send
//! comes back with ASCII letters upper-cased.
//!
//! ```
//! use std::io::{Read, Write};
//! use chi_net::{Model, Server, ServerConfig};
//!
//! let config = ServerConfig::builder()
//!     .addr("127.0.0.1:0".parse().unwrap()) // any free port
//!     .model(Model::Pooled)                 // the classic design: a pool of 3 workers
//!     .build()?;
//! let server = Server::bind(config)?;
//! let (addr, handle) = (server.local_addr(), server.handle());
//! let thread = std::thread::spawn(move || server.run());
//!
//! let mut client = std::net::TcpStream::connect(addr)?;
//! client.write_all(b"hello world")?;
//! let mut answer = [0; 11];
//! client.read_exact(&mut answer)?;
//! assert_eq!(&answer, b"HELLO WORLD");
//! drop(client);
//!
//! handle.shutdown();
//! let stats = thread.join().unwrap()?;
//! assert_eq!(stats.accepted, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The protocol
//! The reply stream is the request stream with `a`–`z` upper-cased, byte for byte, as Python's
//! `bytes.upper()`: every other byte (including bytes ≥ 0x80 and invalid UTF-8) passes through.
//! The answer does not depend on how TCP splits the stream, and is sent as soon as a chunk is
//! read, so a client that sends and then reads once (`send`, then `recv(1024)`) gets its answer at once. Plug another
//! byte transform in with [`Server::bind_with`] and a [`Handler`].
//!
//! # Three models, one API
//! - [`Model::Event`] (the default): one mio event loop per core; connections are dealt
//!   round-robin to the loops, the handler runs inline, partial writes are buffered, and a
//!   connection whose unsent output exceeds the output cap is not read from until the client
//!   catches up, so a client that never reads costs at most the cap plus one chunk. An idle
//!   connection costs a few hundred bytes of server memory (plus the kernel's socket buffers).
//!   Use it to serve many clients, or clients that stay connected.
//! - [`Model::Pooled`]: the classic thread-pool server design. Each connection is queued and
//!   one [`chi::ThreadPool`] worker serves it, one message at a time, for its whole life.
//!   With W workers (default 3) W clients are served at once and the next one waits —
//!   connected, queued, not refused — until one leaves; waiting clients are served in arrival
//!   order. An idle timeout (off by default) frees a worker from a silent client. Use it to
//!   bound work by threads, or when a handler may block.
//! - [`Model::Uring`] (feature `uring`, Linux 6.1+): the event model on io_uring loops.
//!
//! # Limits, both models
//! - `max_connections`: a connection accepted while that many are open (served or waiting)
//!   is closed at once, without an answer; the client sees end of stream (or a reset if it had
//!   already sent data). It is counted in [`ServerStats::rejected`].
//! - idle timeout: a connection with no byte read or written for that long is closed.
//! - Every duration and size has a documented maximum ([`MAX_DURATION`], [`MAX_CONNECTIONS`],
//!   [`MAX_OUTPUT_CAP`], [`MAX_BACKLOG`], [`MAX_WORKERS`]); the builder rejects more, and
//!   every deadline the server computes saturates, so no setting can overflow a clock.
//! - Accept errors never stop or spin the server: errors of one connection are skipped; when
//!   the process runs out of descriptors (EMFILE/ENFILE) accepting pauses — the clients wait
//!   in the listen backlog — and resumes when a connection closes (or after a back-off of at
//!   most 200 ms).
//! - Half-close: after the client's FIN the server sends everything pending, then closes. A
//!   reset or failing client ends only its own connection; a panicking handler too.
//! - Sockets are close-on-exec, the listener sets `SO_REUSEADDR`, and optionally
//!   `SO_REUSEPORT` so several processes can share the port (see the crate README).
//!
//! # Shutdown
//! [`ServerHandle::shutdown`] drains, in both models: the server stops accepting, reads and
//! answers the data already received (pooled: also for connections still waiting for a
//! worker), sends all pending output, sends FIN, and closes each connection once its client
//! closes — never with unread input, which would make the kernel reset the connection and
//! destroy answers in flight; `run` returns when all are closed, or closes the rest at the
//! drain timeout. [`ServerHandle::shutdown_now`] closes everything at once. A pooled handler
//! that blocks forever cannot be interrupted.
//!
//! The library installs no signal handlers and never exits the process: a program turns
//! SIGINT/SIGTERM into handle calls itself (`chi serve` drains on the first and stops at once
//! on the second).
//!
//! # Failures
//! A server thread that dies (a panic outside a handler, or a failing poll) stops the whole
//! server: `run` returns [`ServerError::ThreadDied`] naming it, after closing every
//! connection, rather than serving on with a part missing.
//!
//! # Logging
//! Through `tracing`: connections opened and closed at DEBUG, each received message at DEBUG
//! under the target [`MESSAGE_LOG_TARGET`] (checked once per run, so the default path pays
//! nothing), accept back-offs and drain timeouts at WARN.
// Unsafe code only in the uring model's ring wrapper (`server/uring/sys.rs`), which allows it.
#![deny(unsafe_code)]

pub mod client;
mod config;
mod handler;
pub mod load;
mod server;

pub use client::{
    Client, ClientConfig, ClientConfigBuilder, ClientConfigError, ClientConfigErrorKind,
    ClientError, ClientSummary,
};
pub use config::{
    ConfigError, ConfigErrorKind, DEFAULT_ADDR, DEFAULT_BACKLOG, DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_OUTPUT_CAP, DEFAULT_POOLED_WORKERS, MAX_BACKLOG,
    MAX_CONNECTIONS, MAX_DURATION, MAX_OUTPUT_CAP, MAX_WORKERS, Model, ParseModelError,
    ServerConfig, ServerConfigBuilder,
};
pub use handler::{AsciiUpper, Handler, ascii_upper};
pub use server::{MESSAGE_LOG_TARGET, READ_CHUNK, Server, ServerError, ServerHandle, ServerStats};
