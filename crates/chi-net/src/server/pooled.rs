//! The `pooled` model, the seed's design: the acceptor submits each connection to a
//! `chi::ThreadPool`, whose worker serves it with blocking reads and writes for its whole life.
//! With W workers, W clients are served at once; the next ones wait in the pool's queue (not
//! refused) until a served client leaves or, with an idle timeout, falls silent.
//!
//! Shutdown reaches a worker blocked in `read` through the socket itself: draining shuts down
//! the read side of every connection (the worker still reads what had arrived, then sees end
//! of stream, answers, and closes); the deadline shuts down both sides.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::acceptor::{Acceptor, WaitEnd};
use super::conn::{CloseReason, handle_chunk};
use super::{READ_CHUNK, RunContext, ServerError};
use crate::handler::Handler;
use crate::shutdown::{RunState, Shared};

/// Every open connection's socket, so a shutdown can reach workers blocked on it.
#[derive(Default)]
struct Registry {
    streams: Mutex<HashMap<u64, Arc<TcpStream>>>,
}

impl Registry {
    fn insert(&self, id: u64, stream: Arc<TcpStream>) {
        self.lock().insert(id, stream);
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Shuts down `how` on every open connection; returns how many there were.
    fn shutdown_all(&self, how: Shutdown) -> usize {
        let streams = self.lock();
        for stream in streams.values() {
            // ENOTCONN: the client is already gone, which is fine.
            let _ = stream.shutdown(how);
        }
        streams.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<TcpStream>>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What every connection task shares.
struct ConnCtx {
    handler: Arc<dyn Handler>,
    shared: Arc<Shared>,
    registry: Registry,
    idle_timeout: Option<Duration>,
    log_messages: bool,
}

pub(crate) fn run(ctx: RunContext) -> Result<(), ServerError> {
    let shared = Arc::clone(&ctx.shared);
    let pool = chi::ThreadPool::builder()
        .max_workers(ctx.config.workers())
        .thread_name("chi-conn")
        .build()
        .map_err(ServerError::Pool)?;
    let mut acceptor = Acceptor::new(
        ctx.listener,
        Arc::clone(&shared),
        ctx.config.max_connections(),
    )
    .map_err(ServerError::Setup)?;
    let conn_ctx = Arc::new(ConnCtx {
        handler: ctx.handler,
        shared: Arc::clone(&shared),
        registry: Registry::default(),
        idle_timeout: ctx.config.idle_timeout(),
        log_messages: ctx.log_messages,
    });

    let mut next_id = 0u64;
    let accepted = acceptor.accept_until_shutdown(&mut |stream, peer| {
        let stream = TcpStream::from(stream);
        if let Err(e) = stream.set_nonblocking(false) {
            tracing::debug!(%peer, error = %e, "cannot make the socket blocking; closing it");
            drop(stream);
            shared.connection_closed(0, 0, false);
            return;
        }
        let id = next_id;
        next_id += 1;
        let stream = Arc::new(stream);
        conn_ctx.registry.insert(id, Arc::clone(&stream));
        shared.waiting.fetch_add(1, Ordering::Relaxed);
        let task_ctx = Arc::clone(&conn_ctx);
        // The task handle is dropped: the connection reports through `Shared`, and dropping
        // a handle does not cancel its task.
        if pool
            .submit(move || serve(id, stream, peer, &task_ctx))
            .is_err()
        {
            // Only possible after `pool.shutdown()`, which happens after this loop.
            tracing::error!(%peer, "the pool refused the connection");
            conn_ctx.registry.remove(id);
            shared.waiting.fetch_sub(1, Ordering::Relaxed);
            shared.connection_closed(0, 0, true);
        }
    });
    acceptor.close_listener();

    let all_closed = || shared.open.load(Ordering::SeqCst) == 0;
    let mut waited = accepted.map(|()| WaitEnd::StopNow);
    if waited.is_ok() && shared.state() == RunState::Draining {
        let deadline = Instant::now() + ctx.config.drain_timeout();
        let open = conn_ctx.registry.shutdown_all(Shutdown::Read);
        tracing::info!(open, "draining connections");
        waited = acceptor.wait_until(Some(deadline), true, &all_closed);
        if matches!(waited, Ok(WaitEnd::Deadline)) {
            tracing::warn!(
                open = shared.open.load(Ordering::SeqCst),
                "drain timeout: closing the remaining connections"
            );
        }
    }
    if !matches!(waited, Ok(WaitEnd::Done)) {
        let forced = conn_ctx.registry.shutdown_all(Shutdown::Both);
        shared.forced.fetch_add(forced as u64, Ordering::Relaxed);
        // Keep the first error, if any; otherwise wait for the workers to let go.
        let after = acceptor.wait_until(None, false, &all_closed);
        waited = waited.and(after);
    }
    // Every task has ended or is ending; this joins the workers.
    pool.shutdown();
    waited.map(drop).map_err(ServerError::Setup)
}

/// Books the connection as closed when dropped, even if serving it panicked.
struct Served<'a> {
    id: u64,
    stream: Option<Arc<TcpStream>>,
    ctx: &'a ConnCtx,
    bytes_in: u64,
    bytes_out: u64,
}

impl Drop for Served<'_> {
    fn drop(&mut self) {
        self.ctx.registry.remove(self.id);
        // The registry's reference is gone, so this closes the descriptor before the acceptor
        // (which may wait for a free descriptor) hears of it.
        drop(self.stream.take());
        self.ctx
            .shared
            .connection_closed(self.bytes_in, self.bytes_out, false);
    }
}

/// A pool task: serves one connection until the client leaves, falls idle, or shutdown.
fn serve(id: u64, stream: Arc<TcpStream>, peer: SocketAddr, ctx: &ConnCtx) {
    ctx.shared.waiting.fetch_sub(1, Ordering::Relaxed);
    let mut served = Served {
        id,
        stream: Some(stream),
        ctx,
        bytes_in: 0,
        bytes_out: 0,
    };
    let reason = serve_stream(peer, &mut served);
    tracing::debug!(
        %peer,
        reason = %reason,
        bytes_in = served.bytes_in,
        bytes_out = served.bytes_out,
        "connection closed"
    );
}

fn serve_stream(peer: SocketAddr, served: &mut Served<'_>) -> CloseReason {
    let ctx = served.ctx;
    let Some(stream) = served.stream.as_deref() else {
        return CloseReason::Forced;
    };
    if let Some(idle) = ctx.idle_timeout {
        // A read or write that makes no progress for this long counts as idle.
        if let Err(e) = stream
            .set_read_timeout(Some(idle))
            .and_then(|()| stream.set_write_timeout(Some(idle)))
        {
            return CloseReason::Error(e);
        }
    }
    let mut buf = vec![0; READ_CHUNK];
    let mut out = Vec::new();
    let (mut reader, mut writer) = (stream, stream);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => {
                // FIN after the last answer (the close would send it too; this keeps the order
                // explicit while the client may still be reading).
                let _ = stream.shutdown(Shutdown::Write);
                return match ctx.shared.state() {
                    RunState::Running => CloseReason::PeerClosed,
                    _ => CloseReason::Drained,
                };
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => return CloseReason::IdleTimeout,
            Err(e) => return CloseReason::Error(e),
        };
        served.bytes_in += n as u64;
        out.clear();
        let handled = handle_chunk(&*ctx.handler, &buf[..n], &mut out, &peer, ctx.log_messages);
        if let Err(reason) = handled {
            return reason;
        }
        if out.len() > ctx.shared.peak_output.load(Ordering::Relaxed) {
            ctx.shared
                .peak_output
                .fetch_max(out.len(), Ordering::Relaxed);
        }
        match writer.write_all(&out) {
            Ok(()) => served.bytes_out += out.len() as u64,
            Err(e) if is_timeout(&e) => return CloseReason::IdleTimeout,
            Err(e) => return CloseReason::Error(e),
        }
    }
}

/// A socket timeout shows up as `WouldBlock` (EAGAIN) on Unix and `TimedOut` elsewhere.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
