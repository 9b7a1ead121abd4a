//! A TCP forwarder in front of a test's Redis: clients keep one address while the broker is
//! stopped and started again on a fresh port (a restart on the old port could meet another
//! test's server that took it meanwhile). While the broker is down the gate turns every
//! connection away (accepted, then closed); `first_only` also keeps every connection but the
//! first waiting outside until the test lets them in.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

/// Where the gate sends connections.
#[derive(Debug)]
struct Route {
    /// The broker's port; `None` while it is down.
    backend: Option<u16>,
    /// Every connection goes through (else only the first).
    all: bool,
    admitted: usize,
}

/// The forwarder; stops and closes every connection it made when dropped.
#[derive(Debug)]
pub(crate) struct Gate {
    port: u16,
    route: Arc<Mutex<Route>>,
    stop: Arc<AtomicBool>,
    sockets: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Gate {
    /// A gate that forwards every connection to the Redis on loopback port `backend`.
    pub(crate) fn new(backend: u16) -> Gate {
        Gate::start(backend, true)
    }

    /// A gate that lets only its first connection through until [`to`](Self::to).
    pub(crate) fn first_only(backend: u16) -> Gate {
        Gate::start(backend, false)
    }

    fn start(backend: u16, all: bool) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the gate");
        let port = listener.local_addr().expect("the gate's address").port();
        let route = Arc::new(Mutex::new(Route {
            backend: Some(backend),
            all,
            admitted: 0,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let sockets = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let (route, stop, sockets) = (route.clone(), stop.clone(), sockets.clone());
            thread::spawn(move || {
                for client in listener.incoming() {
                    // ORDERING: SeqCst: set by the test thread before it wakes this one.
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let to = {
                        let mut r = route.lock().unwrap();
                        r.admitted += 1;
                        r.backend.filter(|_| r.all || r.admitted == 1)
                    };
                    if let Some(port) = to {
                        forward(client, port, &sockets);
                    }
                }
            })
        };
        Gate {
            port,
            route,
            stop,
            sockets,
            acceptor: Some(acceptor),
        }
    }

    /// The URL that reaches Redis through the gate.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The broker is going down: turn connections away (call it before stopping Redis).
    pub(crate) fn down(&self) {
        self.route.lock().unwrap().backend = None;
    }

    /// The broker is up on `port`: every connection goes there from now on.
    pub(crate) fn to(&self, port: u16) {
        let mut r = self.route.lock().unwrap();
        r.backend = Some(port);
        r.all = true;
    }
}

/// Connects `client` to the backend and copies both ways on two threads; when either side
/// ends, both sockets are shut down (the client sees the broker's death as its own).
fn forward(client: TcpStream, backend: u16, sockets: &Mutex<Vec<TcpStream>>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", backend)) else {
        return; // the client sees its connection closed, as if Redis were down
    };
    let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    ) else {
        return;
    };
    sockets.lock().unwrap().extend([c3, s3]);
    thread::spawn(move || pump(client, server));
    thread::spawn(move || pump(s2, c2));
}

/// Copies `from` → `to` until either ends, then shuts both down.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

impl Drop for Gate {
    fn drop(&mut self) {
        // ORDERING: SeqCst, see the acceptor.
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wakes the acceptor
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        for s in self.sockets.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}
