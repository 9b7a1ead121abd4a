//! `peer_monoio_echo`: the monoio peer of the network benchmark — thread-per-core io_uring
//! runtimes, a task per connection, answering each read with its bytes upper-cased.
//!
//! ```text
//! peer_monoio_echo --addr 127.0.0.1:0 [--threads N]
//! ```
//!
//! The first stdout line is `listening on <ip>:<port>`, as `chi serve` prints. Written as a
//! monoio user would: each thread runs its own runtime on the io_uring driver and its own
//! listener on the shared port (`SO_REUSEPORT`, the kernel spreads connections), accepts in a
//! loop, `monoio::spawn` per connection, `read` then `write_all` with an owned 16 KiB buffer.
//! Threads: one per core the process may run on unless `--threads` says otherwise. No fallback
//! to epoll: where io_uring is unavailable it fails at start.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{ListenerOpts, TcpListener, TcpStream};

/// Bytes read at once per connection.
const BUF: usize = 16 * 1024;

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "monoio thread-per-core upper-casing echo server (benchmark peer)")]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Threads, each with its own runtime and listener [default: one per available core].
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    // The first thread binds (port 0 becomes a real port); the others join that port.
    let (bound_tx, bound_rx) = mpsc::channel();
    let mut handles = Vec::new();
    let first = std::thread::spawn(move || runtime_thread(args.addr, Some(bound_tx)));
    let addr = match bound_rx.recv() {
        Ok(Ok(addr)) => addr,
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return first
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("panicked")));
        }
    };
    handles.push(first);
    for _ in 1..threads {
        handles.push(std::thread::spawn(move || runtime_thread(addr, None)));
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {addr}")?;
    stdout.flush()?;
    drop(stdout);
    for handle in handles {
        handle
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("a runtime thread panicked")))?;
    }
    Ok(())
}

/// Runs one runtime with its own listener; `bound` learns the listening address.
fn runtime_thread(
    addr: SocketAddr,
    bound: Option<mpsc::Sender<std::io::Result<SocketAddr>>>,
) -> std::io::Result<()> {
    let runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build();
    let mut runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            let e2 = std::io::Error::new(e.kind(), format!("cannot start io_uring: {e}"));
            if let Some(tx) = bound {
                let _ = tx.send(Err(e));
            }
            return Err(e2);
        }
    };
    runtime.block_on(async move {
        let opts = ListenerOpts::new().reuse_port(true).reuse_addr(true);
        let listener = match TcpListener::bind_with_config(addr, &opts) {
            Ok(listener) => listener,
            Err(e) => {
                let e2 = std::io::Error::new(e.kind(), e.to_string());
                if let Some(tx) = bound {
                    let _ = tx.send(Err(e));
                }
                return Err(e2);
            }
        };
        if let Some(tx) = bound {
            let _ = tx.send(listener.local_addr());
        }
        serve(listener).await
    })
}

async fn serve(listener: TcpListener) -> std::io::Result<()> {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                monoio::spawn(connection(stream));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("peer_monoio_echo: accept: {e}");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn connection(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(BUF);
    loop {
        let (read, filled) = stream.read(buf).await;
        buf = filled;
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        buf.make_ascii_uppercase();
        let (written, sent) = stream.write_all(buf).await;
        buf = sent;
        if written.is_err() {
            return;
        }
        buf.clear();
    }
}
