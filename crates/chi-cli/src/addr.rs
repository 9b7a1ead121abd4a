//! Addresses as people type them: `host:port` with a name or an IP (`localhost:8080`,
//! `[::1]:8080`, `127.0.0.1:0`), or a host alone where a port is known otherwise.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Every address `host:port` resolves to, in the resolver's order; an error says which name
/// failed and why.
pub(crate) fn resolve(addr: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let found: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("cannot resolve {addr}: {e}"))?
        .collect();
    if found.is_empty() {
        anyhow::bail!("{addr} resolves to no address");
    }
    Ok(found)
}

/// Joins a host (maybe with a port) and a port: `host` keeps its own port unless `port` is
/// given; a bare host gets `port` or `default_port`. IPv6 literals need brackets with a port.
pub(crate) fn with_port(host: &str, port: Option<u16>, default_port: u16) -> String {
    let (name, own) = split_port(host);
    let port = port.or(own).unwrap_or(default_port);
    if name.contains(':') && !name.starts_with('[') {
        format!("[{name}]:{port}")
    } else {
        format!("{name}:{port}")
    }
}

/// `"host:80"` → `("host", Some(80))`; `"host"` → `("host", None)`; `"[::1]:80"` →
/// `("[::1]", Some(80))`; a bare IPv6 literal keeps its colons.
fn split_port(host: &str) -> (&str, Option<u16>) {
    if let Some((name, port)) = host.rsplit_once(':')
        && (name.ends_with(']') || !name.contains(':'))
        && let Ok(port) = port.parse()
    {
        return (name, Some(port));
    }
    (host, None)
}

/// The first of `addrs` that accepts a TCP connection within `timeout` (the probe closes at
/// once), or the error of the last one tried.
pub(crate) fn first_reachable(
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<SocketAddr, std::io::Error> {
    let mut last = std::io::Error::other("no address to try");
    for &addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(_) => return Ok(addr),
            Err(e) => {
                tracing::debug!(%addr, error = %e, "not reachable; trying the next address");
                last = std::io::Error::new(e.kind(), format!("{addr}: {e}"));
            }
        }
    }
    Err(last)
}

/// The server a client connects to: a positional `ADDR`, or the older `--addr` flag.
#[derive(clap::Args, Debug)]
pub(crate) struct ServerArg {
    /// Server address, HOST:PORT (a name such as localhost:8080, or an IP).
    #[arg(value_name = "ADDR", default_value = "127.0.0.1:8080", value_parser = parse_host)]
    target: String,
    /// Server address (the same as ADDR; kept for scripts written before ADDR).
    #[arg(long, hide = true, value_name = "HOST:PORT", conflicts_with = "target",
          value_parser = parse_host)]
    addr: Option<String>,
}

impl ServerArg {
    /// `host:port` as given.
    pub(crate) fn host(&self) -> String {
        self.addr.clone().unwrap_or_else(|| self.target.clone())
    }
}

/// clap value parser for `HOST[:PORT]`: not empty, no spaces (resolution happens later).
pub(crate) fn parse_host(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains(char::is_whitespace) {
        return Err("expected HOST:PORT, e.g. 127.0.0.1:8080 or localhost:8080".to_owned());
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_join_hosts() {
        assert_eq!(with_port("localhost", None, 8080), "localhost:8080");
        assert_eq!(with_port("localhost:9", None, 8080), "localhost:9");
        assert_eq!(with_port("localhost:9", Some(7), 8080), "localhost:7");
        assert_eq!(with_port("0.0.0.0", Some(0), 8080), "0.0.0.0:0");
        assert_eq!(with_port("[::1]:5", None, 8080), "[::1]:5");
        assert_eq!(with_port("::1", Some(5), 8080), "[::1]:5");
    }

    #[test]
    fn localhost_resolves() {
        let addrs = resolve("localhost:8080").unwrap();
        assert!(
            addrs
                .iter()
                .all(|a| a.port() == 8080 && a.ip().is_loopback())
        );
        assert!(resolve("no port here").is_err());
    }
}
