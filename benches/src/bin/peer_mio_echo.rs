//! `peer_mio_echo`: the mio-class peer of the network benchmark — one thread, one mio event
//! loop, every connection on it, each read answered upper-cased.
//!
//! ```text
//! peer_mio_echo --addr 127.0.0.1:0
//! ```
//!
//! The first stdout line is `listening on <ip>:<port>`, as `chi serve` prints. This is mio's
//! `tcp_server` example made fit to serve: accept until `WouldBlock`, a slab of connections,
//! one shared 64 KiB read buffer, an answer that cannot be written at once is kept and reading
//! from that connection pauses until it is sent (bounded memory per connection), and accept
//! errors such as EMFILE pause accepting for 10 ms instead of ending the program. An idle
//! connection costs its slab entry and its socket.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

/// Bytes read at once.
const BUF: usize = 64 * 1024;
const LISTENER: Token = Token(usize::MAX);

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "single-threaded mio upper-casing echo server (benchmark peer)")]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
}

/// One client: its socket and the part of an answer not yet written.
struct Conn {
    stream: TcpStream,
    pending: Vec<u8>,
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    // mio's bind sets SO_REUSEADDR and a backlog of 1024.
    let mut listener = TcpListener::bind(args.addr)?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {}", listener.local_addr()?)?;
    stdout.flush()?;
    drop(stdout);

    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut buf = vec![0u8; BUF];
    let mut events = Events::with_capacity(1024);
    let mut accept_paused_until: Option<Instant> = None;
    loop {
        let timeout = accept_paused_until.map(|t| t.saturating_duration_since(Instant::now()));
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut accept_now = accept_paused_until.is_some_and(|t| Instant::now() >= t);
        for event in events.iter() {
            if event.token() == LISTENER {
                accept_now = true;
                continue;
            }
            let index = event.token().0;
            let Some(conn) = conns.get_mut(index).and_then(Option::as_mut) else {
                continue;
            };
            if !serve(conn, &mut buf) {
                conns[index] = None; // dropping the socket closes it and leaves the poller
                free.push(index);
            }
        }
        if accept_now {
            accept_paused_until = None;
            loop {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        let index = free.pop().unwrap_or_else(|| {
                            conns.push(None);
                            conns.len() - 1
                        });
                        let interest = Interest::READABLE | Interest::WRITABLE;
                        if poll
                            .registry()
                            .register(&mut stream, Token(index), interest)
                            .is_ok()
                        {
                            conns[index] = Some(Conn {
                                stream,
                                pending: Vec::new(),
                            });
                        } else {
                            free.push(index);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::Interrupted
                                | io::ErrorKind::ConnectionAborted
                                | io::ErrorKind::ConnectionReset
                        ) => {}
                    Err(e) => {
                        // EMFILE and friends: pause accepting, keep serving.
                        eprintln!("peer_mio_echo: accept: {e}");
                        accept_paused_until = Some(Instant::now() + Duration::from_millis(10));
                        break;
                    }
                }
            }
        }
    }
}

/// Sends what is pending, then reads and answers until the socket would block or an answer
/// cannot be sent whole. False when the connection is finished.
fn serve(conn: &mut Conn, buf: &mut [u8]) -> bool {
    loop {
        // Flush the pending answer first; reading waits until it is out.
        while !conn.pending.is_empty() {
            match conn.stream.write(&conn.pending) {
                Ok(0) => return false,
                Ok(n) => {
                    conn.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        let n = match conn.stream.read(buf) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        let answer = &mut buf[..n];
        answer.make_ascii_uppercase();
        match conn.stream.write(answer) {
            Ok(m) if m == n => {}
            Ok(m) => conn.pending.extend_from_slice(&answer[m..]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                conn.pending.extend_from_slice(answer)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                conn.pending.extend_from_slice(answer)
            }
            Err(_) => return false,
        }
    }
}
