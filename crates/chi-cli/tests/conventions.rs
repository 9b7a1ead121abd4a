//! The command-line conventions through the real binary: shell completions, host names and
//! `-p`, environment variables, colours, help texts in chi's own words that end with their exit
//! codes, and a README whose CLI section agrees with `--help`. Servers bind loopback port 0;
//! every child is killed and reaped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

fn chi() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chi"))
}

fn run(args: &[&str]) -> Output {
    chi().args(args).stdin(Stdio::null()).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A `chi serve` child, killed and reaped on every path.
struct Serve {
    child: Child,
    addr: SocketAddr,
}

impl Serve {
    /// Starts `chi serve args…` with `env` set and reads its `listening on` line.
    fn start(args: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut child = chi()
            .arg("serve")
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Serve { child, addr }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn round_trip(addr: SocketAddr) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(LONG)).unwrap();
    stream.write_all(b"abc").unwrap();
    let mut answer = [0; 3];
    stream.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"ABC");
}

const SUBCOMMANDS: [&str; 5] = ["serve", "client", "load", "demo", "completions"];

// ===== completions =====

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = text(&out.stdout);
        assert!(
            script.contains("serve") && script.contains("connections"),
            "{shell}"
        );
    }
    let out = run(&["completions", "powershell"]);
    assert_eq!(out.status.code(), Some(2));
}

// ===== host names, -p, environment variables =====

#[test]
fn serve_takes_a_host_name_and_a_port_flag_and_client_a_host_name() {
    let server = Serve::start(&["--addr", "localhost", "-p", "0"], &[]);
    assert!(server.addr.ip().is_loopback(), "{}", server.addr);
    round_trip(server.addr);
    // `localhost` may resolve to ::1 first; the client tries every address.
    let target = format!("localhost:{}", server.addr.port());
    let out = run(&["client", &target, "-n", "1", "-m", "hi there"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "HI THERE\n");
}

#[test]
fn load_takes_a_host_name() {
    let server = Serve::start(&["--addr", "127.0.0.1:0"], &[]);
    let target = format!("localhost:{}", server.addr.port());
    let out = run(&["load", &target, "-c", "2", "-n", "5", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("\"messages\":10"));
}

#[test]
fn serve_reads_its_settings_from_the_environment() {
    let server = Serve::start(&[], &[("CHI_ADDR", "127.0.0.1:0"), ("CHI_MODEL", "pooled")]);
    round_trip(server.addr);
    // The flag wins over the variable.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let server = Serve::start(&["-p", "0"], &[("CHI_PORT", &port)]);
    assert_ne!(server.addr.port().to_string(), port);
    // A bad value from the environment is a usage error too.
    let out = chi()
        .args(["serve"])
        .env("CHI_WORKERS", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let help = text(&run(&["serve", "--help"]).stdout);
    for var in [
        "CHI_ADDR",
        "CHI_PORT",
        "CHI_MODEL",
        "CHI_WORKERS",
        "CHI_DRAIN_TIMEOUT",
    ] {
        assert!(help.contains(&format!("[env: {var}")), "{var}:\n{help}");
    }
}

// ===== colours =====

#[test]
fn color_always_and_never_and_no_color() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let load = |extra: &[&str], no_color: bool| {
        let mut cmd = chi();
        cmd.args(["load", &closed.to_string(), "-c", "1", "-n", "1"])
            .args(extra);
        if no_color {
            cmd.env("NO_COLOR", "1");
        } else {
            cmd.env_remove("NO_COLOR");
        }
        cmd.output().unwrap()
    };
    let always = load(&["--color", "always"], false);
    assert_eq!(always.status.code(), Some(4));
    assert!(text(&always.stdout).contains("\x1b["), "report coloured");
    assert!(text(&always.stderr).contains("\x1b["), "logs coloured");
    for out in [load(&["--color", "never"], false), load(&[], true)] {
        assert!(!text(&out.stdout).contains('\x1b'), "{}", text(&out.stdout));
        assert!(!text(&out.stderr).contains('\x1b'), "{}", text(&out.stderr));
    }
}

// ===== help texts =====

#[test]
fn every_help_speaks_chi_and_ends_with_exit_codes() {
    let mut helps = vec![("chi".to_owned(), text(&run(&["--help"]).stdout))];
    for sub in SUBCOMMANDS {
        helps.push((sub.to_owned(), text(&run(&[sub, "--help"]).stdout)));
    }
    for (name, help) in helps {
        assert!(!help.to_lowercase().contains("seed"), "{name}:\n{help}");
        let tail = help.trim_end().rsplit("Exit status:").next().unwrap();
        assert!(help.contains("Exit status:"), "{name}:\n{help}");
        assert!(
            tail.lines()
                .skip(1)
                .all(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit())),
            "{name}: the help must end with its exit codes:\n{help}"
        );
    }
}

#[test]
fn bad_input_is_one_line_reason_and_exit_2() {
    for args in [
        &["load", "-c", "many"][..],
        &["serve", "-p", "http"],
        &["client", "--interval", "soon"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        let first = err.lines().next().unwrap();
        assert!(first.starts_with("error: "), "{args:?}: {err}");
        assert!(!err.contains("panicked"));
    }
}

// ===== README =====

/// The README's "Command line" section.
fn readme_cli_section() -> String {
    let readme = include_str!("../../../README.md");
    let start = readme
        .find("## Command line")
        .expect("README has a `## Command line` section");
    let rest = &readme[start + 3..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    rest[..end].to_owned()
}

#[test]
fn readme_cli_section_agrees_with_help() {
    let section = readme_cli_section();
    let short = text(&run(&["-h"]).stdout);
    assert!(
        section.contains(short.trim_end()),
        "the README's `chi -h` block differs from the binary's:\n{short}"
    );
    for sub in SUBCOMMANDS {
        assert!(
            section.contains(&format!("chi {sub}")),
            "README lacks chi {sub}"
        );
        let help = text(&run(&[sub, "--help"]).stdout);
        for flag in help
            .split_whitespace()
            .filter(|w| w.starts_with("--") && w.len() > 3)
            .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
        {
            if ["--help", "--version", "--verbose", "--quiet", "--color"].contains(&flag) {
                continue;
            }
            assert!(
                section.contains(flag),
                "README's CLI section lacks `chi {sub} {flag}`"
            );
        }
    }
}
