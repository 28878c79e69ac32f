//! Test support for Paddock. [`contract`] is the backend contract suite: every backend
//! available on a machine must pass it, isolation attacks included.

pub mod contract;
pub mod model_server;

/// Whether a test that needs `what` must fail instead of skipping (CI sets
/// `PADDOCK_REQUIRE_<WHAT>=1`). Prints the reason when it skips.
pub fn require_or_skip(what: &str, available: bool, why: &str) -> bool {
    if available {
        return true;
    }
    let var = format!("PADDOCK_REQUIRE_{}", what.to_uppercase());
    if std::env::var(&var).as_deref() == Ok("1") {
        panic!("{var}=1 but {what} is not available: {why}");
    }
    eprintln!("SKIPPED ({what} unavailable): {why}");
    false
}

/// Whether a Paddock server answers `GET /healthz` on `port`. A bare TCP connect is not
/// enough: with nothing listening yet, a loopback connect can connect to itself (source
/// port = destination port) and the wait would end before the server is up.
pub fn answers_http(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 ")
}
