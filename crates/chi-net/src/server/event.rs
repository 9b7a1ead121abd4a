//! The `event` model: one mio event loop per worker (default: per core). The acceptor deals
//! connections round-robin to the loops over a channel plus the loop's `Waker` (see `loops`);
//! each loop owns its connections, runs the handler inline and keeps per connection only what
//! is unsent.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::chunk::{CloseReason, log_closed};
use super::conn::{Conn, DriveCtx, Progress};
use super::idle::IdleTimers;
use super::loops::{LoopCore, LoopHandle, Order, WAKER, guard_loop, run_loops, spawn_loop};
use super::slab::Slab;
use super::state::Shared;
use super::{READ_CHUNK, RunContext, ServerError};
use crate::handler::Handler;

pub(crate) fn run(ctx: RunContext, ready: &mut dyn FnMut()) -> Result<(), ServerError> {
    // The acceptor accepts and deals: a loop has no listener of its own.
    run_loops(ctx, ready, &|id, ctx, _| {
        spawn(id, ctx).map_err(ServerError::Setup)
    })
}

fn spawn(id: usize, ctx: &RunContext) -> io::Result<LoopHandle> {
    let shared = Arc::clone(&ctx.shared);
    let handler = Arc::clone(&ctx.handler);
    let (idle_timeout, output_cap) = (ctx.config.idle_timeout(), ctx.config.output_cap());
    let log_messages = ctx.log_messages;
    spawn_loop(
        &ctx.shared,
        format!("chi-net-loop-{id}"),
        move |poll, rx| {
            let idle = IdleTimers::new(idle_timeout, Arc::clone(&shared));
            let event_loop = EventLoop {
                core: LoopCore::new(id, rx, idle),
                poll,
                conns: Slab::default(),
                again: Vec::new(),
                buf: vec![0; READ_CHUNK].into_boxed_slice(),
                out: Vec::new(),
                shared,
                handler,
                output_cap,
                log_messages,
                peak: 0,
            };
            event_loop.run_guarded();
        },
    )
}

struct EventLoop {
    /// The acceptor's messages, the idle timers (entries of closed connections are compacted
    /// at each close, see `close`), the drain and stop orders.
    core: LoopCore,
    poll: Poll,
    /// Connections by slot; the slot is the mio token.
    conns: Slab<Conn>,
    /// Connections whose read budget ran out; driven again before the next wait.
    again: Vec<usize>,
    buf: Box<[u8]>,
    /// Where answers are built (see `DriveCtx::out`).
    out: Vec<u8>,
    shared: Arc<Shared>,
    handler: Arc<dyn Handler>,
    output_cap: usize,
    log_messages: bool,
    peak: usize,
}

impl EventLoop {
    // ===== MAIN LOOP =====
    /// Runs the loop; a panic or a failed poll stops the whole server (see
    /// `Shared::thread_died`) after this loop's connections are closed and counted.
    fn run_guarded(mut self) {
        let name = format!("event loop {}", self.core.id);
        let shared = Arc::clone(&self.shared);
        guard_loop(
            &mut self,
            &shared,
            &name,
            "poll",
            Self::run,
            Self::close_all,
        );
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.next_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                self.close_all();
                return Err(e);
            }
            #[cfg(test)]
            self.shared.maybe_inject_fault(super::state::Fault::Worker);
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    WAKER => self.receive(now),
                    Token(slot) => {
                        if (event.is_read_closed() || event.is_error() || event.is_priority())
                            && let Some(conn) = self.conns.get_mut(slot)
                        {
                            conn.read_to_block_from_now();
                        }
                        self.drive(slot, now)
                    }
                }
            }
            for slot in std::mem::take(&mut self.again) {
                self.drive(slot, now);
            }
            self.expire_idle(now);
            if self.core.stop {
                self.close_all();
                return Ok(());
            }
            if self.core.draining {
                if self.conns.len() == 0 {
                    return Ok(());
                }
                if self.core.drain_overdue(now) {
                    tracing::warn!(
                        event_loop = self.core.id,
                        open = self.conns.len(),
                        "drain timeout: closing the remaining connections"
                    );
                    self.close_all();
                    return Ok(());
                }
            }
        }
    }

    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        let wake_at = self.core.wake_at();
        wake_at.map(|at| at.saturating_duration_since(now))
    }

    // ===== MESSAGES FROM THE ACCEPTOR =====
    fn receive(&mut self, now: Instant) {
        loop {
            match self.core.next_order() {
                Order::Open(stream, peer, id) => self.open(stream, peer, id, now),
                Order::Drain => {
                    for slot in self.conns.keys() {
                        if let Some(conn) = self.conns.get_mut(slot) {
                            conn.start_drain();
                        }
                        self.drive(slot, now);
                    }
                }
                Order::Wait => return,
            }
        }
    }

    fn open(&mut self, mut stream: TcpStream, peer: SocketAddr, id: u64, now: Instant) {
        let slot = self.conns.next_key();
        // Every interest, edge-triggered: no re-registration as the connection changes phase.
        // PRIORITY reports urgent data, at whose mark a read stops short (see `Conn::drive`).
        let interest = Interest::READABLE | Interest::WRITABLE | Interest::PRIORITY;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(slot), interest)
        {
            tracing::warn!(%peer, error = %e, "cannot register a connection; closing it");
            drop(stream);
            self.shared.connection_closed(0, 0, &CloseReason::Error(e));
            return;
        }
        let mut conn = Conn::new(stream, peer, id, self.core.idle.millis(now));
        if self.core.draining {
            conn.start_drain();
        }
        let inserted = self.conns.insert(conn);
        debug_assert_eq!(inserted, slot);
        self.core.idle.start(now, id, slot);
        // Registration reports the current readiness, so data already sent raises an event.
    }

    // ===== CONNECTIONS =====
    fn drive(&mut self, slot: usize, now: Instant) {
        let now_ms = self.core.idle.millis(now);
        let Some(conn) = self.conns.get_mut(slot) else {
            return; // closed earlier in this turn
        };
        let mut ctx = DriveCtx {
            handler: &*self.handler,
            buf: &mut self.buf,
            out: &mut self.out,
            output_cap: self.output_cap,
            log_messages: self.log_messages,
            now_ms,
            peak: &mut self.peak,
            shared: &self.shared,
        };
        match conn.drive(&mut ctx) {
            Progress::Wait => {}
            Progress::Again => self.again.push(slot),
            Progress::Close(reason) => self.close(slot, reason),
        }
    }

    fn close(&mut self, slot: usize, reason: CloseReason) {
        let Some(mut conn) = self.conns.remove(slot) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        log_closed(&conn.peer, &reason, conn.bytes_in, conn.bytes_out);
        let (bytes_in, bytes_out) = (conn.bytes_in, conn.bytes_out);
        // Release the descriptor before telling the acceptor, which may be waiting for one.
        drop(conn);
        self.shared.connection_closed(bytes_in, bytes_out, &reason);
        let conns = &self.conns;
        let is_open = |slot, id| conns.get(slot).is_some_and(|c: &Conn| c.id == id);
        self.core.idle.compact(conns.len(), is_open);
    }

    fn close_all(&mut self) {
        for slot in self.conns.keys() {
            self.close(slot, CloseReason::Forced);
        }
    }

    fn expire_idle(&mut self, now: Instant) {
        let conns = &self.conns;
        let last_active = |slot, id| {
            let conn: &Conn = conns.get(slot).filter(|c| c.id == id)?;
            Some(conn.last_activity_ms)
        };
        for slot in self.core.idle.expire(now, last_active) {
            self.close(slot, CloseReason::IdleTimeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connection_state_stays_small() {
        // What one idle connection costs the loop (its output buffer is freed when empty);
        // the kernel's socket buffers come on top.
        // 64 bytes; mio's stream carries a selector id in debug builds, which adds 16.
        let debug_extra = if cfg!(debug_assertions) { 16 } else { 0 };
        assert!(std::mem::size_of::<Option<Conn>>() <= 64 + debug_extra);
    }
}
