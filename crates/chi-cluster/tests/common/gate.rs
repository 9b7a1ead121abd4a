//! A TCP forwarder in front of a test's Redis that lets its first connection through at once
//! and turns every later one away (accepted, then closed) until the test opens it: a client's
//! reader can be kept off the broker while the test restarts the broker under it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

/// The forwarder; stops and closes every connection it made when dropped.
#[derive(Debug)]
pub(crate) struct Gate {
    port: u16,
    open: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    sockets: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Gate {
    /// A gate in front of the Redis on loopback port `backend`.
    pub(crate) fn new(backend: u16) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the gate");
        let port = listener.local_addr().expect("the gate's address").port();
        let open = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let sockets = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let (open, stop, sockets) = (open.clone(), stop.clone(), sockets.clone());
            thread::spawn(move || {
                let admitted = AtomicUsize::new(0);
                for client in listener.incoming() {
                    // ORDERING: SeqCst: the flags are set by the test thread before it acts.
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    // ORDERING: as above; `admitted` is this thread's own.
                    let first = admitted.fetch_add(1, Ordering::SeqCst) == 0;
                    if first || open.load(Ordering::SeqCst) {
                        forward(client, backend, &sockets);
                    }
                }
            })
        };
        Gate {
            port,
            open,
            stop,
            sockets,
            acceptor: Some(acceptor),
        }
    }

    /// The URL that reaches Redis through the gate.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// From now on every connection goes through.
    pub(crate) fn open(&self) {
        // ORDERING: SeqCst, see the acceptor.
        self.open.store(true, Ordering::SeqCst);
    }
}

/// Connects `client` to the backend and copies both ways on two threads; when either side
/// ends, both sockets are shut down (the client sees the broker's death as its own).
fn forward(client: TcpStream, backend: u16, sockets: &Mutex<Vec<TcpStream>>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", backend)) else {
        return; // the client sees its connection closed, as if Redis were down
    };
    let pair = [client, server];
    let clones: Vec<TcpStream> = pair.iter().filter_map(|s| s.try_clone().ok()).collect();
    sockets.lock().unwrap().extend(clones);
    let [client, server] = pair;
    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    thread::spawn(move || pump(client, server));
    thread::spawn(move || pump(server2, client2));
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
