//! Reading and checking a proxy request head (bounded, never panics on bad input).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::allowlist::Host;

/// Largest accepted request head (request line plus headers).
pub(crate) const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;

/// What the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `CONNECT host:port`
    Connect,
    /// An absolute-form `http://` request; `path` is the origin-form target.
    Forward { path: String },
}

/// A parsed, acceptable proxy request head.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) host: Host,
    pub(crate) port: u16,
    pub(crate) target: Target,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) minor_version: u8,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
}

/// A request refused before any policy decision.
#[derive(Debug)]
pub(crate) struct Rejection {
    pub(crate) status: u16,
    pub(crate) method: String,
    pub(crate) reason: String,
}

impl Rejection {
    fn bad(method: &str, why: &str) -> Rejection {
        Rejection {
            status: 400,
            method: method.to_owned(),
            reason: format!("bad request: {why}"),
        }
    }
}

/// Reads one request head. `Ok(None)`: the client closed (or went quiet) before sending
/// anything. On success also returns the bytes read past the head (start of the body or
/// tunnel data).
pub(crate) async fn read_request<R: AsyncRead + Unpin>(
    stream: &mut R,
    timeout: Duration,
) -> Result<Option<(Request, Vec<u8>)>, Rejection> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await;
        let n = match read {
            Err(_) if buf.is_empty() => return Ok(None),
            Err(_) => {
                return Err(Rejection {
                    status: 408,
                    method: String::new(),
                    reason: "bad request: timed out reading the request head".into(),
                })
            }
            Ok(Err(_)) | Ok(Ok(0)) if buf.is_empty() => return Ok(None),
            Ok(Err(_)) | Ok(Ok(0)) => {
                return Err(Rejection::bad(
                    "",
                    "connection closed inside the request head",
                ))
            }
            Ok(Ok(n)) => n,
        };
        // Never hold more than MAX_HEAD (+ one chunk) bytes.
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => return Err(too_large()),
            Ok(httparse::Status::Complete(len)) => {
                let request = check(&req)?;
                let rest = buf.split_off(len);
                return Ok(Some((request, rest)));
            }
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(too_large()),
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => return Err(too_large()),
            Err(e) => {
                let method = req.method.unwrap_or_default();
                return Err(Rejection::bad(method, &e.to_string()));
            }
        }
    }
}

fn too_large() -> Rejection {
    Rejection {
        status: 431,
        method: String::new(),
        reason: format!("bad request: request head larger than {MAX_HEAD} bytes"),
    }
}

fn check(req: &httparse::Request<'_, '_>) -> Result<Request, Rejection> {
    let method = req.method.unwrap_or_default();
    let path = req.path.unwrap_or_default();
    let minor_version = req.version.unwrap_or(1);
    let headers = req
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
        .collect();
    if method == "CONNECT" {
        let (host, port) = parse_authority(path, None).map_err(|e| Rejection::bad(method, e))?;
        return Ok(Request {
            method: method.to_owned(),
            host,
            port,
            target: Target::Connect,
            minor_version,
            headers,
        });
    }
    let scheme_end = path.find("://").ok_or_else(|| {
        Rejection::bad(
            method,
            "not a proxy request (expected CONNECT or an absolute http:// URL)",
        )
    })?;
    let scheme = &path[..scheme_end];
    if !scheme.eq_ignore_ascii_case("http") {
        let why = if scheme.eq_ignore_ascii_case("https") {
            "https:// URLs must use CONNECT"
        } else {
            "unsupported URL scheme"
        };
        return Err(Rejection::bad(method, why));
    }
    let rest = &path[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (host, port) =
        parse_authority(&rest[..authority_end], Some(80)).map_err(|e| Rejection::bad(method, e))?;
    let mut origin = rest[authority_end..].to_owned();
    if let Some(fragment) = origin.find('#') {
        origin.truncate(fragment);
    }
    if !origin.starts_with('/') {
        origin.insert(0, '/');
    }
    Ok(Request {
        method: method.to_owned(),
        host,
        port,
        target: Target::Forward { path: origin },
        minor_version,
        headers,
    })
}

/// Parses `host:port`, `[v6]:port` (or, with a default port, `host`/`[v6]`).
pub(crate) fn parse_authority(
    s: &str,
    default_port: Option<u16>,
) -> Result<(Host, u16), &'static str> {
    if s.is_empty() {
        return Err("empty host");
    }
    if s.contains('@') {
        return Err("user information in the URL is not allowed");
    }
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']').ok_or("unterminated IPv6 literal")?;
        let after = &s[end + 1..];
        let port = if after.is_empty() {
            None
        } else {
            Some(after.strip_prefix(':').ok_or("junk after IPv6 literal")?)
        };
        (&s[..=end], port)
    } else {
        match s.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => return Err("IPv6 literal must be in brackets"),
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        Some(p) => parse_port(p)?,
        None => default_port.ok_or("missing port")?,
    };
    Ok((Host::parse(host)?, port))
}

fn parse_port(p: &str) -> Result<u16, &'static str> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err("invalid port");
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err("invalid port"),
        Ok(port) => Ok(port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    async fn parse(raw: &[u8]) -> Result<Option<(Request, Vec<u8>)>, Rejection> {
        let mut input = raw;
        read_request(&mut input, Duration::from_secs(5)).await
    }

    fn name(s: &str) -> Host {
        Host::Name(s.into())
    }

    #[tokio::test]
    async fn connect_and_absolute_form() {
        let (req, rest) = parse(b"CONNECT Files.PyPI.org.:443 HTTP/1.1\r\nHost: x\r\n\r\nhello")
            .await
            .expect("ok")
            .expect("request");
        assert_eq!((req.method.as_str(), req.port), ("CONNECT", 443));
        assert_eq!(req.host, name("files.pypi.org"));
        assert_eq!(req.target, Target::Connect);
        assert_eq!(rest, b"hello");

        let (req, _) = parse(b"GET HTTP://Example.com/a/b?c=d#frag HTTP/1.0\r\n\r\n")
            .await
            .expect("ok")
            .expect("request");
        assert_eq!((req.host, req.port), (name("example.com"), 80));
        assert_eq!(
            req.target,
            Target::Forward {
                path: "/a/b?c=d".into()
            }
        );
        assert_eq!(req.minor_version, 0);

        let (req, _) = parse(b"GET http://[::1]:8080?x HTTP/1.1\r\n\r\n")
            .await
            .expect("ok")
            .expect("request");
        assert_eq!(req.host, Host::Ip(IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1])));
        assert_eq!(req.port, 8080);
        assert_eq!(req.target, Target::Forward { path: "/?x".into() });
    }

    #[tokio::test]
    async fn rejections() {
        for (raw, status) in [
            (&b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"[..], 400),
            (b"GET https://example.com/ HTTP/1.1\r\n\r\n", 400),
            (b"GET ftp://example.com/ HTTP/1.1\r\n\r\n", 400),
            (b"GET http://user@example.com/ HTTP/1.1\r\n\r\n", 400),
            (b"GET http://:80/ HTTP/1.1\r\n\r\n", 400),
            (b"CONNECT example.com HTTP/1.1\r\n\r\n", 400),
            (b"CONNECT example.com:0 HTTP/1.1\r\n\r\n", 400),
            (b"CONNECT example.com:99999 HTTP/1.1\r\n\r\n", 400),
            (b"CONNECT ::1:443 HTTP/1.1\r\n\r\n", 400),
            (b"CONNECT [::1]x:443 HTTP/1.1\r\n\r\n", 400),
            (b"CONNECT exa%mple.com:443 HTTP/1.1\r\n\r\n", 400),
            (b"\x00\x01\x02garbage\r\n\r\n", 400),
            (b"GET http://example.com/ HTTP/2.0\r\n\r\n", 400),
            (b"GET http://example.com/", 400),
        ] {
            let err = parse(raw).await.expect_err(&String::from_utf8_lossy(raw));
            assert_eq!(err.status, status, "{}", String::from_utf8_lossy(raw));
            assert!(err.reason.starts_with("bad request"), "{}", err.reason);
        }
        let mut big = b"GET http://example.com/ HTTP/1.1\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
        assert_eq!(parse(&big).await.expect_err("too large").status, 431);
        assert!(parse(b"").await.expect("eof").is_none());
    }
}
