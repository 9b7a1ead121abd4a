//! Embedding chi-net with your own protocol: a `Handler` that answers with the ROT13 of what
//! it reads, a server on an OS-chosen local port, one client round trip, then a graceful
//! shutdown from another thread through the server's handle.
use chi_net::{Handler, Server, ServerConfig};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

/// Rotates ASCII letters by 13 places; every other byte passes through. It maps each byte on
/// its own, so the answer does not depend on how TCP splits the stream.
struct Rot13;

impl Handler for Rot13 {
    fn handle(&self, input: &[u8], output: &mut Vec<u8>) {
        output.extend(input.iter().map(|&b| match b {
            b'a'..=b'z' => (b - b'a' + 13) % 26 + b'a',
            b'A'..=b'Z' => (b - b'A' + 13) % 26 + b'A',
            _ => b,
        }));
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ServerConfig::builder()
        .addr("127.0.0.1:0".parse()?) // port 0: the OS picks a free one
        .build()?;
    let server = Server::bind_with(config, Rot13)?;
    let addr = server.local_addr();
    let handle = server.handle();
    let serving = std::thread::spawn(move || server.run());
    println!("ROT13 server listening on {addr}");

    // A client: send, close our sending half, read the whole answer until the server closes.
    let mut stream = TcpStream::connect(addr)?;
    stream.write_all(b"Hello, chi-net!")?;
    stream.shutdown(Shutdown::Write)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    println!("sent \"Hello, chi-net!\", got {answer:?}");
    assert_eq!(answer, "Uryyb, puv-arg!");

    // Graceful shutdown: stop accepting, finish what was received, and let `run` return.
    handle.shutdown();
    let stats = serving.join().expect("the server thread does not panic")?;
    println!(
        "shut down: {} connection(s), {} bytes in, {} bytes out",
        stats.accepted, stats.bytes_in, stats.bytes_out
    );
    assert_eq!((stats.accepted, stats.open), (1, 0));
    assert_eq!((stats.bytes_in, stats.bytes_out), (15, 15));
    Ok(())
}
