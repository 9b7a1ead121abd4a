//! The listening socket: bound with `SO_REUSEADDR` (and optionally `SO_REUSEPORT`),
//! close-on-exec, non-blocking; the uring model's group of listeners, one per loop, on one
//! port; and the classification of `accept` errors that decides between "skip this one",
//! "back off" and "stop".
//!
//! Every socket the server owns is close-on-exec: socket2 creates the listener with
//! `SOCK_CLOEXEC`, and mio accepts with `accept4(SOCK_CLOEXEC | SOCK_NONBLOCK)` (the uring
//! model's multishot accept with the same flags), so a child process started by a handler
//! never inherits a connection.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Creates, binds and starts listening on `addr`, non-blocking.
pub(crate) fn bind(addr: SocketAddr, reuse_port: bool, backlog: u32) -> io::Result<TcpListener> {
    // socket2 sets close-on-exec on every socket it creates.
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // A restarted server must be able to bind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    // Accepted connections inherit both (Linux copies the listener's socket options), so the
    // uring model, which accepts in the kernel, needs no call per connection. Answers are
    // small and latency matters more than packet count; urgent (out-of-band) bytes stay in the
    // stream, so they are answered like every other byte instead of vanishing from it.
    socket.set_nodelay(true)?;
    socket.set_out_of_band_inline(true)?;
    Ok(socket.into())
}

/// Binds `count` listeners on one port, each with `SO_REUSEPORT`, so that the kernel spreads
/// the connections over them (the uring model: one per loop). Unless `reuse_port` asks to
/// share the port with other processes, `addr` is first bound alone without `SO_REUSEPORT`:
/// if anything else listens there that fails as [`bind`] does, and a second server can never
/// join this one's group. That socket is closed before the group binds the port it got (so a
/// port 0 works too).
pub(crate) fn bind_group(
    addr: SocketAddr,
    count: usize,
    reuse_port: bool,
    backlog: u32,
) -> io::Result<Vec<TcpListener>> {
    let mut addr = addr;
    if !reuse_port {
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        probe.set_reuse_address(true)?;
        probe.bind(&addr.into())?;
        addr = probe
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("the probe socket has no IP address"))?;
    }
    let first = bind(addr, true, backlog)?;
    addr = first.local_addr()?;
    let mut group = vec![first];
    for _ in 1..count {
        group.push(bind(addr, true, backlog)?);
    }
    Ok(group)
}

/// What the acceptor should do after `accept` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AcceptFailure {
    /// Nothing more to accept right now.
    Drained,
    /// That one connection failed (aborted, reset, refused by a firewall rule): try the next.
    Skip,
    /// The process or system is out of a resource (EMFILE, ENFILE, ENOBUFS, ENOMEM) or the
    /// error is unknown: stop accepting for a while; the pending connections stay queued in
    /// the kernel's backlog and are accepted once descriptors free up.
    BackOff,
}

/// Sorts an `accept` error. Never says "stop": a listening server only stops on shutdown.
pub(crate) fn classify(err: &io::Error) -> AcceptFailure {
    match err.kind() {
        io::ErrorKind::WouldBlock => return AcceptFailure::Drained,
        io::ErrorKind::Interrupted
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionRefused
        | io::ErrorKind::PermissionDenied
        | io::ErrorKind::TimedOut => return AcceptFailure::Skip,
        _ => {}
    }
    match err.raw_os_error() {
        // Linux passes these network errors of the new connection through accept(2); its man
        // page says to treat them like EAGAIN and retry.
        Some(
            libc::EPROTO
            | libc::ENOPROTOOPT
            | libc::EHOSTDOWN
            | libc::ENONET
            | libc::EHOSTUNREACH
            | libc::EOPNOTSUPP
            | libc::ENETUNREACH
            | libc::ENETDOWN,
        ) => AcceptFailure::Skip,
        _ => AcceptFailure::BackOff,
    }
}

/// Exponential back-off for accept: 1 ms doubling to 200 ms, reset by a successful accept.
/// A connection closing while backing off also ends the wait early (it freed a descriptor).
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    delay: Option<Duration>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(1);
    const MAX: Duration = Duration::from_millis(200);

    /// The next pause; doubles each time until reset.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let next = match self.delay {
            None => Self::FIRST,
            Some(d) => (d * 2).min(Self::MAX),
        };
        self.delay = Some(next);
        next
    }

    /// True once `next_delay` was called since the last reset.
    pub(crate) fn active(&self) -> bool {
        self.delay.is_some()
    }

    /// Back to the first delay (after a successful accept).
    pub(crate) fn reset(&mut self) {
        self.delay = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_resource_exhaustion_backs_off() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            let err = io::Error::from_raw_os_error(errno);
            assert_eq!(classify(&err), AcceptFailure::BackOff, "{err}");
        }
    }

    #[test]
    fn classify_per_connection_errors_skip() {
        for errno in [
            libc::ECONNABORTED,
            libc::EPROTO,
            libc::EINTR,
            libc::EPERM,
            libc::ENETUNREACH,
        ] {
            let err = io::Error::from_raw_os_error(errno);
            assert_eq!(classify(&err), AcceptFailure::Skip, "{err}");
        }
        let would_block = io::Error::from(io::ErrorKind::WouldBlock);
        assert_eq!(classify(&would_block), AcceptFailure::Drained);
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut b = Backoff::default();
        assert!(!b.active());
        assert_eq!(b.next_delay(), Duration::from_millis(1));
        assert_eq!(b.next_delay(), Duration::from_millis(2));
        for _ in 0..20 {
            b.next_delay();
        }
        assert_eq!(b.next_delay(), Duration::from_millis(200));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(1));
    }

    #[test]
    fn bind_sets_reuse_flags() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), true, 16).unwrap();
        let sock = socket2::SockRef::from(&listener);
        assert!(sock.reuse_address().unwrap());
        assert!(sock.reuse_port().unwrap());
        let plain = bind("127.0.0.1:0".parse().unwrap(), false, 16).unwrap();
        assert!(!socket2::SockRef::from(&plain).reuse_port().unwrap());
    }

    #[test]
    fn bind_reuse_port_lets_two_listeners_share_a_port() {
        let a = bind("127.0.0.1:0".parse().unwrap(), true, 16).unwrap();
        let b = bind(a.local_addr().unwrap(), true, 16).unwrap();
        assert_eq!(a.local_addr().unwrap(), b.local_addr().unwrap());
        let err = bind(a.local_addr().unwrap(), false, 16).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn accepted_connections_inherit_nodelay_and_oobinline() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), false, 16).unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        listener.set_nonblocking(false).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(accepted.nodelay().unwrap());
        assert!(
            socket2::SockRef::from(&accepted)
                .out_of_band_inline()
                .unwrap()
        );
    }

    #[test]
    fn bind_group_shares_one_port_and_keeps_others_out() {
        let group = bind_group("127.0.0.1:0".parse().unwrap(), 3, false, 16).unwrap();
        let addr = group[0].local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        assert!(group.iter().all(|l| l.local_addr().unwrap() == addr));
        assert!(
            group
                .iter()
                .all(|l| socket2::SockRef::from(l).reuse_port().unwrap())
        );
        // Another server on the port fails, as a group or alone, unless it shares on purpose.
        let err = bind_group(addr, 2, false, 16).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let err = bind(addr, false, 16).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let sharing = bind_group(addr, 1, true, 16).unwrap();
        assert_eq!(sharing[0].local_addr().unwrap(), addr);
    }
}
