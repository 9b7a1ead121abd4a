//! `peer_thread_echo`: the thread-per-connection peer of the network benchmark — std's
//! blocking sockets, one OS thread per accepted connection, each read answered upper-cased.
//!
//! ```text
//! peer_thread_echo --addr 127.0.0.1:0
//! ```
//!
//! The first stdout line is `listening on <ip>:<port>`, as `chi serve` prints. The listener
//! has `SO_REUSEADDR` and a backlog of 1024 (as tokio's and mio's); each thread has std's
//! default 2 MiB stack (mostly untouched) and a 16 KiB read buffer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use clap::Parser;
use socket2::{Domain, Protocol, Socket, Type};

/// Bytes read at once per connection.
const BUF: usize = 16 * 1024;

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "thread-per-connection upper-casing echo server (benchmark peer)")]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = bind(args.addr)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", listener.local_addr()?)?;
    stdout.flush()?;
    drop(stdout);
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = std::thread::Builder::new().spawn(move || connection(stream)) {
                    eprintln!("peer_thread_echo: cannot spawn a thread: {e}");
                }
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("peer_thread_echo: accept: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn connection(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf[..n].make_ascii_uppercase();
        if stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}
