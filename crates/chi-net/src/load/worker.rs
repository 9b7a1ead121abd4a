//! One client thread: a mio event loop that owns a share of the connections (active ones
//! `i % threads == worker`, idle ones likewise) and takes them through the run's phases.
//!
//! ```text
//! CONNECT   idle connections first, then active ones, at most CONNECT_WINDOW handshakes in
//!           flight (a burst of 10,000 SYNs would overflow the server's listen backlog)
//!   gate    wait until every worker has connected everything (or given up)
//! RUN       every active connection sends its first request at once, then lockstep;
//!           a connection closes as soon as its last answer is in (so a pooled server's
//!           worker moves on to the next client, as with line clients)
//! HOLD      (idle-only runs) keep the idle connections open until the duration ends or a stop
//!   gate    wait until every worker's active connections are done
//! CLOSE     drop the idle connections
//! ```
//!
//! Every poll waits at most [`STOP_CHECK`], so a stop request (a signal handler can only set a
//! flag) and the deadline are noticed within that time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use super::Shared;
use super::conn::{self, Active, DriveCtx, Idle, State};
use super::gate::Phase;
use super::report::End;
use super::tally::{LoadPhase, Tally};

/// Handshakes in flight per worker.
const CONNECT_WINDOW: usize = 128;
/// Longest a poll sleeps before looking at the stop flag and the deadline.
const STOP_CHECK: Duration = Duration::from_millis(50);
/// The read buffer: the most one `read` asks for.
const SCRATCH: usize = 64 * 1024;

/// Active connection `i` of this worker is token `2i`, idle connection `j` is `2j + 1`.
fn active_token(i: usize) -> Token {
    Token(i * 2)
}
fn idle_token(j: usize) -> Token {
    Token(j * 2 + 1)
}

/// How often a worker looks for answers past the reply timeout.
const OVERDUE_CHECK: Duration = Duration::from_millis(20);
/// How often a worker hands its interval latencies to the run.
const INTERVAL_HANDOVER: Duration = Duration::from_millis(100);

/// Why the workers must stop now, if they must: a stop request, or the deadline.
fn must_stop(shared: &Shared) -> Option<End> {
    // ORDERING: the flag carries no data; seeing it one poll late is harmless.
    if shared.stop.load(Ordering::Relaxed) {
        Some(End::Interrupted)
    } else if shared.deadline.is_some_and(|d| Instant::now() >= d) {
        Some(End::Duration)
    } else {
        None
    }
}

/// How long one poll may sleep: until the deadline, and at most [`STOP_CHECK`].
fn poll_wait(shared: &Shared) -> Duration {
    match shared.deadline {
        Some(d) => d.saturating_duration_since(Instant::now()).min(STOP_CHECK),
        None => STOP_CHECK,
    }
}

pub(crate) struct Worker {
    index: usize,
    shared: Arc<Shared>,
    poll: Poll,
    events: Events,
    /// The tokens of the last poll's events (reused buffer).
    tokens: Vec<Token>,
    active: Vec<Active>,
    idle: Vec<Idle>,
    scratch: Box<[u8]>,
    tally: Tally,
}

impl Worker {
    /// A worker for connections `index, index + threads, …` of each kind.
    pub(crate) fn new(index: usize, shared: Arc<Shared>) -> io::Result<Worker> {
        let threads = shared.threads as u64;
        let mine = |count: u64| {
            let index = index as u64;
            (index..count).step_by(threads as usize).collect::<Vec<_>>()
        };
        let now = Instant::now();
        let active = mine(shared.connections)
            .into_iter()
            .map(|id| Active::new(id, now))
            .collect();
        let idle = mine(shared.idle).into_iter().map(|_| Idle::new()).collect();
        Ok(Worker {
            index,
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            tokens: Vec::new(),
            active,
            idle,
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            tally: Tally::new(shared.intervals.is_some()),
            shared,
        })
    }

    /// Runs every phase and returns what was counted.
    pub(crate) fn run(mut self) -> Tally {
        let shared = Arc::clone(&self.shared);
        let seat = shared.gate.seat(self.index);
        self.connect_all();
        self.tally.publish(&shared.progress);
        seat.wait(Phase::Connected);
        let go = *shared.go.get_or_init(Instant::now);
        if shared.connections == 0 {
            shared.progress.set_phase(LoadPhase::Holding);
            self.hold();
        } else {
            shared.progress.set_phase(LoadPhase::Running);
            self.exchange(go);
        }
        self.tally.publish(&shared.progress);
        seat.wait(Phase::Finished);
        // CLOSE: the sockets close as the worker drops.
        self.tally
    }

    fn must_stop(&self) -> Option<End> {
        must_stop(&self.shared)
    }

    fn poll_once(&mut self) -> io::Result<()> {
        match self
            .poll
            .poll(&mut self.events, Some(poll_wait(&self.shared)))
        {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            other => other,
        }
    }

    // ===== CONNECT =====

    fn connect_all(&mut self) {
        // Idle connections first, so the server holds them all before any traffic.
        let mut queue = (0..self.idle.len())
            .map(idle_token)
            .chain((0..self.active.len()).map(active_token));
        let mut in_flight = 0usize;
        let mut queued = self.idle.len() + self.active.len();
        loop {
            while in_flight < CONNECT_WINDOW {
                let Some(token) = queue.next() else { break };
                queued -= 1;
                if self.start_connect(token) {
                    in_flight += 1;
                }
            }
            if in_flight == 0 && queued == 0 {
                return;
            }
            if let Some(end) = self.must_stop() {
                self.tally.cut_short = Some(end);
                self.give_up_connecting(end);
                return;
            }
            if let Err(e) = self.poll_once() {
                self.fatal(&e);
                return;
            }
            let mut tokens = std::mem::take(&mut self.tokens);
            tokens.clear();
            tokens.extend(self.events.iter().map(|e| e.token()));
            for token in &tokens {
                if self.finish_connect(*token) {
                    in_flight -= 1;
                }
            }
            self.tokens = tokens;
            self.tally.publish(&self.shared.progress);
        }
    }

    /// Issues the connect for `token`; false if it failed at once (counted).
    fn start_connect(&mut self, token: Token) -> bool {
        let result = conn::start_connect(self.shared.addr).and_then(|mut stream| {
            self.poll.registry().register(
                &mut stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        match result {
            Ok(stream) => {
                let slot = self.slot(token);
                *slot.0 = Some(stream);
                *slot.1 = State::Connecting;
                true
            }
            Err(e) => {
                self.connect_failed(token, &e);
                false
            }
        }
    }

    /// After an event on `token` during CONNECT; true when its handshake ended (either way).
    fn finish_connect(&mut self, token: Token) -> bool {
        let idle = token.0 % 2 == 1;
        if idle {
            let conn = &mut self.idle[token.0 / 2];
            if conn.state == State::Open && conn.closed_by_server(&mut self.scratch) {
                self.tally.idle_closed += 1;
            }
        }
        let (stream, state) = self.slot(token);
        if *state != State::Connecting {
            // Not connecting (an open active connection's events wait for the run).
            return false;
        }
        let Some(s) = stream.as_ref() else {
            return false;
        };
        match conn::connect_result(s) {
            Ok(false) => false,
            Ok(true) => {
                // Each request is one write; Nagle would hold it back.
                let _ = s.set_nodelay(true);
                *state = State::Open;
                if idle {
                    self.tally.idle_connected += 1;
                } else {
                    self.tally.connected += 1;
                }
                true
            }
            Err(e) => {
                self.connect_failed(token, &e);
                true
            }
        }
    }

    /// Counts `token` as a connection that could not connect: an active one's messages are
    /// all missing.
    fn connect_failed(&mut self, token: Token, err: &io::Error) {
        let idle = token.0 % 2 == 1;
        let (stream, state) = self.slot(token);
        *stream = None;
        *state = State::Done;
        if !idle && self.shared.total.is_some() {
            self.tally.missing += self.shared.total_messages();
        }
        let msg = format!("{}: {err}", self.shared.addr);
        self.tally.connect_failed(idle, &msg);
        tracing::debug!(error = %msg, idle, "load connection failed to connect");
    }

    fn give_up_connecting(&mut self, end: End) {
        let err = io::Error::new(
            io::ErrorKind::TimedOut,
            match end {
                End::Interrupted => "not connected when the run was stopped",
                _ => "not connected within the duration",
            },
        );
        let pending: Vec<Token> = (0..self.idle.len())
            .map(idle_token)
            .chain((0..self.active.len()).map(active_token))
            .filter(|t| matches!(self.state_of(*t), State::Queued | State::Connecting))
            .collect();
        for token in pending {
            self.connect_failed(token, &err);
        }
    }

    fn state_of(&self, token: Token) -> State {
        if token.0 % 2 == 1 {
            self.idle[token.0 / 2].state
        } else {
            self.active[token.0 / 2].state
        }
    }

    fn slot(&mut self, token: Token) -> (&mut Option<mio::net::TcpStream>, &mut State) {
        if token.0 % 2 == 1 {
            let c = &mut self.idle[token.0 / 2];
            (&mut c.stream, &mut c.state)
        } else {
            let c = &mut self.active[token.0 / 2];
            (&mut c.stream, &mut c.state)
        }
    }

    // ===== RUN =====

    fn exchange(&mut self, go: Instant) {
        let total = self.shared.total_messages();
        let shared = Arc::clone(&self.shared);
        let mut cx = DriveCtx {
            payload: &shared.payload,
            scratch: &mut self.scratch,
            tally: &mut self.tally,
            warmup: shared.warmup,
            total,
            go,
            period: shared.period,
            connections: shared.connections,
        };
        // Open loop: connections waiting for their next request's time, earliest first.
        let mut due: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
        let mut running = 0usize;
        let now = Instant::now();
        for (i, conn) in self.active.iter_mut().enumerate() {
            if conn.state == State::Open && !conn.begin(&mut cx, now) {
                running += 1;
                if let Some(at) = conn.take_fresh_due() {
                    due.push(Reverse((at, i)));
                }
            }
        }
        let mut checked = Instant::now();
        let mut handed = Instant::now();
        while running > 0 {
            if let Some(end) = must_stop(&shared) {
                cx.tally.cut_short = Some(end);
                for conn in &mut self.active {
                    if end == End::Duration {
                        conn.finish_in_flight(cx.tally, total);
                    } else {
                        conn.abandon(cx.tally, total);
                    }
                }
                break;
            }
            let now = Instant::now();
            running -= resume_due(&mut self.active, &mut cx, &mut due, now);
            if let Some(limit) = shared.reply_timeout
                && now.saturating_duration_since(checked) >= OVERDUE_CHECK
            {
                checked = now;
                running -= give_up_overdue(&mut self.active, &mut cx, now, limit);
            }
            if running == 0 {
                break;
            }
            let mut wait = poll_wait(&shared).min(OVERDUE_CHECK);
            if let Some(&Reverse((at, _))) = due.peek() {
                wait = wait.min(at.saturating_duration_since(now));
            }
            match self.poll.poll(&mut self.events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::error!(error = %e, "load worker cannot poll");
                    for conn in &mut self.active {
                        conn.abandon(cx.tally, total);
                    }
                    break;
                }
            }
            running -= dispatch(
                &self.events,
                &mut self.idle,
                &mut self.active,
                &mut cx,
                &mut due,
            );
            cx.tally.publish(&shared.progress);
            if now.saturating_duration_since(handed) >= INTERVAL_HANDOVER {
                handed = now;
                hand_over_interval(&shared, cx.tally);
            }
        }
        hand_over_interval(&shared, cx.tally);
    }

    // ===== HOLD =====

    fn hold(&mut self) {
        loop {
            if let Some(end) = self.must_stop() {
                self.tally.cut_short = Some(end);
                // Count the closes that have already happened, though not yet polled.
                if self
                    .poll
                    .poll(&mut self.events, Some(Duration::ZERO))
                    .is_ok()
                {
                    self.idle_events();
                }
                return;
            }
            if let Err(e) = self.poll_once() {
                self.fatal(&e);
                return;
            }
            self.idle_events();
        }
    }

    /// Handles the last poll's events of idle connections.
    fn idle_events(&mut self) {
        for event in self.events.iter() {
            let token = event.token();
            if token.0 % 2 == 1 {
                let idle = &mut self.idle[token.0 / 2];
                if idle.state == State::Open && idle.closed_by_server(&mut self.scratch) {
                    self.tally.idle_closed += 1;
                }
            }
        }
    }

    /// The poller itself failed (it does not, short of a kernel bug): give everything up.
    fn fatal(&mut self, err: &io::Error) {
        tracing::error!(error = %err, "load worker cannot poll");
        self.give_up_connecting(End::Interrupted);
        let total = self.shared.total_messages();
        for conn in &mut self.active {
            conn.abandon(&mut self.tally, total);
        }
    }
}

/// Open loop: sends the requests whose time has come; returns how many connections finished.
fn resume_due(
    active: &mut [conn::Active],
    cx: &mut DriveCtx<'_>,
    due: &mut BinaryHeap<Reverse<(Instant, usize)>>,
    now: Instant,
) -> usize {
    let mut finished = 0;
    while let Some(&Reverse((at, i))) = due.peek() {
        if at > now {
            break;
        }
        due.pop();
        let conn = &mut active[i];
        if conn.resume(cx, now) {
            finished += 1;
        } else if let Some(at) = conn.take_fresh_due() {
            due.push(Reverse((at, i)));
        }
    }
    finished
}

/// Drives the connections the last poll's events are for; returns how many finished. Open
/// loop: a connection that now waits for its next request's time joins `due`.
fn dispatch(
    events: &Events,
    idle: &mut [Idle],
    active: &mut [conn::Active],
    cx: &mut DriveCtx<'_>,
    due: &mut BinaryHeap<Reverse<(Instant, usize)>>,
) -> usize {
    let mut finished = 0;
    for event in events.iter() {
        let token = event.token();
        let broken = event.is_error() || event.is_read_closed() || event.is_write_closed();
        if token.0 % 2 == 1 {
            let idle = &mut idle[token.0 / 2];
            if idle.state == State::Open && idle.closed_by_server(cx.scratch) {
                cx.tally.idle_closed += 1;
            }
            continue;
        }
        let i = token.0 / 2;
        let conn = &mut active[i];
        if conn.state != State::Open {
            continue;
        }
        let readable = event.is_readable() || broken;
        let writable = event.is_writable() || broken;
        if conn.drive(cx, readable, writable, broken) {
            finished += 1;
        } else if let Some(at) = conn.take_fresh_due() {
            due.push(Reverse((at, i)));
        }
    }
    finished
}

/// Gives up the connections whose answer has taken longer than `limit`; returns how many.
fn give_up_overdue(
    active: &mut [conn::Active],
    cx: &mut DriveCtx<'_>,
    now: Instant,
    limit: Duration,
) -> usize {
    let mut given_up = 0;
    for conn in active.iter_mut().filter(|c| c.overdue(now, limit)) {
        tracing::debug!(after = ?limit, "no answer in time: load connection given up");
        conn.abandon(cx.tally, cx.total);
        cx.tally.timed_out += 1;
        given_up += 1;
    }
    given_up
}

/// Adds the worker's latencies since the last call to the run's interval histogram.
fn hand_over_interval(shared: &Shared, tally: &mut Tally) {
    let (Some(mine), Some(theirs)) = (tally.interval.as_mut(), shared.intervals.as_ref()) else {
        return;
    };
    if mine.is_empty() {
        return;
    }
    let mut theirs = theirs.lock().unwrap_or_else(PoisonError::into_inner);
    // Same bounds on both sides, so adding cannot fail.
    let _ = theirs.add(&*mine);
    mine.reset();
}
