//! `peer_tokio_echo`: the tokio peer of the network benchmark — a task per connection on
//! tokio's multi-thread runtime, answering each read with its bytes upper-cased.
//!
//! ```text
//! peer_tokio_echo --addr 127.0.0.1:0 [--threads N]
//! ```
//!
//! The first stdout line is `listening on <ip>:<port>`, as `chi serve` prints. Written as a
//! tokio user would: `TcpListener::accept` in a loop, `tokio::spawn` per connection,
//! `read` then `write_all`. The 16 KiB read buffer is allocated when the connection first
//! becomes readable, so an idle connection costs its task and socket only. Worker threads:
//! tokio's default (one per core the process may run on) unless `--threads` says otherwise.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bytes read at once per connection.
const BUF: usize = 16 * 1024;

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "tokio task-per-connection upper-casing echo server (benchmark peer)")]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Runtime worker threads [default: tokio's, one per available core].
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads);
    }
    runtime.build()?.block_on(serve(args.addr))
}

async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    // tokio's bind sets SO_REUSEADDR and a backlog of 1024.
    let listener = TcpListener::bind(addr).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", listener.local_addr()?)?;
    stdout.flush()?;
    drop(stdout);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("peer_tokio_echo: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn connection(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    if stream.readable().await.is_err() {
        return;
    }
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf[..n].make_ascii_uppercase();
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
