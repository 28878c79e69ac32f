//! End-to-end tests of the egress proxy. Everything talks to loopback only: the "allowed
//! hosts" are tiny servers on 127.0.0.1, reachable because these tests set
//! `allow_loopback` (except where the loopback block itself is under test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paddock_egress::{Allowlist, Decision, EgressProxy, ProxyConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

type Decisions = Arc<Mutex<Vec<Decision>>>;

fn allowlist(patterns: &[&str]) -> Allowlist {
    let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
    Allowlist::new(&patterns).expect("valid patterns")
}

async fn start_with(config: ProxyConfig) -> (EgressProxy, Decisions) {
    let decisions: Decisions = Arc::default();
    let sink = Arc::clone(&decisions);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let proxy = EgressProxy::start(
        listener,
        config,
        Arc::new(move |d: &Decision| sink.lock().expect("lock").push(d.clone())),
    )
    .await;
    (proxy, decisions)
}

/// A proxy allowing `patterns`, with loopback reachable (test origins live on 127.0.0.1).
async fn start(patterns: &[&str]) -> (EgressProxy, Decisions) {
    let mut config = ProxyConfig::new(allowlist(patterns));
    config.allow_loopback = true;
    start_with(config).await
}

fn taken(decisions: &Decisions) -> Vec<Decision> {
    std::mem::take(&mut *decisions.lock().expect("lock"))
}

/// A TCP server that greets each connection with "hello\n" and then echoes; counts connections.
async fn echo_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if stream.write_all(b"hello\n").await.is_err() {
                    return;
                }
                let (mut rd, mut wr) = stream.split();
                let _ = tokio::io::copy(&mut rd, &mut wr).await;
            });
        }
    });
    (addr, accepted)
}

/// A tiny HTTP origin: captures each raw request (head and body) and answers
/// `origin saw <request line>`, then closes.
async fn origin_server() -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    if let Some(i) = find(&buf, b"\r\n\r\n") {
                        break i + 4;
                    }
                    match stream.read(&mut chunk).await {
                        Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                let body_done = |buf: &[u8]| {
                    if head.contains("transfer-encoding: chunked") {
                        buf.ends_with(b"0\r\n\r\n")
                    } else {
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        buf.len() - head_end >= len
                    }
                };
                while !body_done(&buf) {
                    match stream.read(&mut chunk).await {
                        Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                        _ => break,
                    }
                }
                let raw = String::from_utf8_lossy(&buf).into_owned();
                let first = raw.lines().next().unwrap_or_default().to_owned();
                let body = format!("origin saw {first}");
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Origin: yes\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
                let _ = tx.send(raw);
            });
        }
    });
    (addr, rx)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends `request` to the proxy and reads until it closes.
async fn exchange(proxy: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(proxy).await.expect("connect proxy");
    stream.write_all(request).await.expect("send request");
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut out))
        .await
        .expect("proxy closed the connection in time")
        .expect("read response");
    String::from_utf8_lossy(&out).into_owned()
}

/// Opens a CONNECT tunnel and checks the 200 and the echo server's greeting.
async fn open_tunnel(proxy: SocketAddr, target: &str) -> TcpStream {
    let mut stream = TcpStream::connect(proxy).await.expect("connect proxy");
    let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send CONNECT");
    let expected = b"HTTP/1.1 200 Connection established\r\n\r\nhello\n";
    let mut got = vec![0u8; expected.len()];
    tokio::time::timeout(WAIT, stream.read_exact(&mut got))
        .await
        .expect("tunnel answered in time")
        .expect("read tunnel answer");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected)
    );
    stream
}

async fn echo_round_trip(stream: &mut TcpStream, payload: &[u8]) {
    stream
        .write_all(payload)
        .await
        .expect("write through tunnel");
    let mut back = vec![0u8; payload.len()];
    tokio::time::timeout(WAIT, stream.read_exact(&mut back))
        .await
        .expect("echo in time")
        .expect("read echo");
    assert_eq!(back, payload);
}

/// Asserts the peer closes the connection (EOF or reset) in time.
async fn assert_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .expect("connection closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "still open: {read:?}");
}

#[tokio::test]
async fn connect_allowed_tunnels_bytes_both_ways() {
    let (echo, _) = echo_server().await;
    let (proxy, decisions) = start(&["127.0.0.1"]).await;
    let mut tunnel = open_tunnel(proxy.local_addr(), &echo.to_string()).await;
    echo_round_trip(&mut tunnel, b"ping through the tunnel").await;
    echo_round_trip(&mut tunnel, &[0u8, 1, 2, 255, 254]).await;

    let decisions = taken(&decisions);
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    let d = &decisions[0];
    assert!(d.allowed);
    assert_eq!(d.method, "CONNECT");
    assert_eq!((d.host.as_str(), d.port), ("127.0.0.1", echo.port()));
    assert_eq!(d.reason, "allowed by 127.0.0.1");
    assert_eq!(d.client, tunnel.local_addr().expect("addr"));
    proxy.stop().await;
}

#[tokio::test]
async fn connect_denied_gets_403_naming_host_and_reason() {
    let (proxy, decisions) = start(&["*.example.org"]).await;
    let response = exchange(
        proxy.local_addr(),
        b"CONNECT Evil.Example.COM.:443 HTTP/1.1\r\nHost: evil.example.com:443\r\n\r\n",
    )
    .await;
    assert!(
        response.starts_with("HTTP/1.1 403 Forbidden\r\n"),
        "{response}"
    );
    assert!(response.contains("evil.example.com:443"), "{response}");
    assert!(response.contains("not in the allowlist"), "{response}");

    let decisions = taken(&decisions);
    assert_eq!(decisions.len(), 1);
    let d = &decisions[0];
    assert!(!d.allowed);
    assert_eq!(
        (d.method.as_str(), d.host.as_str(), d.port),
        ("CONNECT", "evil.example.com", 443)
    );
    assert_eq!(d.reason, "not in the allowlist");
    proxy.stop().await;
}

#[tokio::test]
async fn absolute_form_get_is_forwarded_in_origin_form() {
    let (origin, mut seen) = origin_server().await;
    let (proxy, decisions) = start(&["127.0.0.1"]).await;
    let request = format!(
        "GET http://{origin}/some/path?q=1 HTTP/1.1\r\nHost: {origin}\r\nUser-Agent: test\r\n\
         Proxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\n\
         Connection: keep-alive, X-Hop\r\nX-Hop: drop me\r\nAccept: */*\r\n\r\n"
    );
    let response = exchange(proxy.local_addr(), request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("X-Origin: yes"), "{response}");
    assert!(
        response.ends_with("origin saw GET /some/path?q=1 HTTP/1.1"),
        "{response}"
    );

    let raw = tokio::time::timeout(WAIT, seen.recv())
        .await
        .expect("origin saw it")
        .expect("request");
    let lower = raw.to_lowercase();
    assert!(raw.starts_with("GET /some/path?q=1 HTTP/1.1\r\n"), "{raw}");
    assert!(raw.contains(&format!("Host: {origin}\r\n")), "{raw}");
    assert!(
        raw.contains("User-Agent: test\r\n") && raw.contains("Accept: */*\r\n"),
        "{raw}"
    );
    assert!(lower.contains("connection: close\r\n"), "{raw}");
    assert!(!lower.contains("proxy-"), "{raw}");
    assert!(
        !lower.contains("keep-alive") && !lower.contains("x-hop"),
        "{raw}"
    );

    let decisions = taken(&decisions);
    assert_eq!(decisions.len(), 1);
    assert!(decisions[0].allowed);
    assert_eq!(decisions[0].method, "GET");
    assert_eq!(decisions[0].reason, "allowed by 127.0.0.1");
    proxy.stop().await;
}

#[tokio::test]
async fn request_bodies_are_streamed_to_the_origin() {
    let (origin, mut seen) = origin_server().await;
    let (proxy, _decisions) = start(&["127.0.0.1"]).await;

    // Content-Length body, followed by bytes that must not reach the origin.
    let request = format!(
        "POST http://{origin}/upload HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello worldGET /smuggled HTTP/1.1\r\n\r\n"
    );
    let response = exchange(proxy.local_addr(), request.as_bytes()).await;
    assert!(
        response.ends_with("origin saw POST /upload HTTP/1.1"),
        "{response}"
    );
    let raw = tokio::time::timeout(WAIT, seen.recv())
        .await
        .expect("in time")
        .expect("request");
    assert!(raw.ends_with("\r\n\r\nhello world"), "{raw:?}");

    // Chunked body, passed through verbatim.
    let request = format!(
        "PUT http://{origin}/chunks HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
    );
    let response = exchange(proxy.local_addr(), request.as_bytes()).await;
    assert!(
        response.ends_with("origin saw PUT /chunks HTTP/1.1"),
        "{response}"
    );
    let raw = tokio::time::timeout(WAIT, seen.recv())
        .await
        .expect("in time")
        .expect("request");
    assert!(
        raw.ends_with("\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"),
        "{raw:?}"
    );

    // Ambiguous framing is refused before anything is sent.
    let request = format!(
        "POST http://{origin}/x HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc"
    );
    let response = exchange(proxy.local_addr(), request.as_bytes()).await;
    assert!(
        response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{response}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn absolute_form_denied_gets_403_and_origin_is_not_contacted() {
    let (origin, mut seen) = origin_server().await;
    let (proxy, decisions) = start(&["example.com"]).await;
    let request = format!("GET http://{origin}/ HTTP/1.1\r\nHost: {origin}\r\n\r\n");
    let response = exchange(proxy.local_addr(), request.as_bytes()).await;
    assert!(
        response.starts_with("HTTP/1.1 403 Forbidden\r\n"),
        "{response}"
    );
    assert!(response.contains(&format!("{origin}")), "{response}");
    let decisions = taken(&decisions);
    assert_eq!(decisions.len(), 1);
    assert!(!decisions[0].allowed);
    assert_eq!(decisions[0].reason, "not in the allowlist");
    assert!(seen.try_recv().is_err(), "the origin was contacted");
    proxy.stop().await;
}

#[tokio::test]
async fn wildcard_does_not_cover_the_apex() {
    let (echo, _) = echo_server().await;
    let (proxy, decisions) = start(&["*.localhost"]).await;
    let connect = format!("CONNECT localhost:{} HTTP/1.1\r\n\r\n", echo.port());
    let response = exchange(proxy.local_addr(), connect.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert_eq!(taken(&decisions)[0].reason, "not in the allowlist");

    proxy.set_allowlist(allowlist(&["LOCALHOST."]));
    let mut tunnel = TcpStream::connect(proxy.local_addr())
        .await
        .expect("connect");
    tunnel.write_all(connect.as_bytes()).await.expect("send");
    let mut got = [0u8; 12];
    tunnel.read_exact(&mut got).await.expect("read");
    assert_eq!(&got, b"HTTP/1.1 200");
    let d = taken(&decisions);
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].host.as_str(), d[0].reason.as_str()),
        ("localhost", "allowed by localhost")
    );
    proxy.stop().await;
}

#[tokio::test]
async fn blocked_addresses_are_refused_even_when_allowlisted() {
    let (echo, accepted) = echo_server().await;
    let patterns = [
        "localhost",
        "127.0.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "[::ffff:127.0.0.1]",
    ];
    let (proxy, decisions) = start_with(ProxyConfig::new(allowlist(&patterns))).await;
    let port = echo.port();
    for (target, reason_prefix) in [
        // `localhost` resolves to loopback: the resolved address is checked, not the name.
        (format!("localhost:{port}"), "blocked address "),
        (
            format!("127.0.0.1:{port}"),
            "blocked address 127.0.0.1 (loopback)",
        ),
        (
            format!("[::ffff:127.0.0.1]:{port}"),
            "blocked address 127.0.0.1 (loopback)",
        ),
        (
            "169.254.169.254:80".to_string(),
            "blocked address 169.254.169.254 (link-local)",
        ),
        (
            format!("0.0.0.0:{port}"),
            "blocked address 0.0.0.0 (unspecified)",
        ),
    ] {
        let response = exchange(
            proxy.local_addr(),
            format!("CONNECT {target} HTTP/1.1\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(
            response.starts_with("HTTP/1.1 403 Forbidden\r\n"),
            "{target}: {response}"
        );
        let d = taken(&decisions);
        assert_eq!(d.len(), 1, "{target}");
        assert!(!d[0].allowed, "{target}");
        assert!(
            d[0].reason.starts_with(reason_prefix),
            "{target}: {}",
            d[0].reason
        );
        assert!(response.contains(&d[0].reason), "{response}");
    }
    // The same through absolute-form.
    let response = exchange(
        proxy.local_addr(),
        format!("GET http://localhost:{port}/ HTTP/1.1\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    let d = taken(&decisions);
    assert!(d[0].reason.ends_with("(loopback)"), "{}", d[0].reason);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "a blocked address was connected to"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn private_addresses_are_refused_with_block_private() {
    let mut config = ProxyConfig::new(allowlist(&["10.1.2.3", "192.168.7.7"]));
    config.block_private = true;
    let (proxy, decisions) = start_with(config).await;
    for (target, reason) in [
        ("10.1.2.3:443", "blocked address 10.1.2.3 (private)"),
        ("192.168.7.7:80", "blocked address 192.168.7.7 (private)"),
    ] {
        let response = exchange(
            proxy.local_addr(),
            format!("CONNECT {target} HTTP/1.1\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 403"), "{response}");
        assert_eq!(taken(&decisions)[0].reason, reason);
    }
    proxy.stop().await;
}

#[tokio::test]
async fn bad_requests_get_400_and_the_proxy_keeps_serving() {
    let (echo, _) = echo_server().await;
    let (proxy, decisions) = start(&["127.0.0.1"]).await;
    let mut huge = b"GET http://127.0.0.1/ HTTP/1.1\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 20 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
            "400 Bad Request",
        ),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n".to_vec(),
            "400 Bad Request",
        ),
        (b"HELLO\r\n\r\n".to_vec(), "400 Bad Request"),
        (
            b"CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n".to_vec(),
            "400 Bad Request",
        ),
        (
            b"GET https://127.0.0.1/ HTTP/1.1\r\n\r\n".to_vec(),
            "400 Bad Request",
        ),
        (
            b"GET http://user:pw@127.0.0.1/ HTTP/1.1\r\n\r\n".to_vec(),
            "400 Bad Request",
        ),
        (
            b"GET http://127.0.0.1:1/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n".to_vec(),
            "400 Bad Request",
        ),
        (
            b"GET http://127.0.0.1/ HTTP/1.1\r\nBad Header\r\n\r\n".to_vec(),
            "400 Bad Request",
        ),
        (huge, "431 Request Header Fields Too Large"),
    ];
    for (request, status) in &cases {
        let response = exchange(proxy.local_addr(), request).await;
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{:?} -> {response}",
            String::from_utf8_lossy(&request[..request.len().min(60)])
        );
        let d = taken(&decisions);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(!d[0].allowed);
        assert!(d[0].reason.starts_with("bad request"), "{}", d[0].reason);
    }
    // A client that connects and leaves without a request gets no decision.
    drop(
        TcpStream::connect(proxy.local_addr())
            .await
            .expect("connect"),
    );
    let mut tunnel = open_tunnel(proxy.local_addr(), &echo.to_string()).await;
    echo_round_trip(&mut tunnel, b"still alive").await;
    assert_eq!(taken(&decisions).len(), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn ten_concurrent_tunnels() {
    let (echo, accepted) = echo_server().await;
    let (proxy, decisions) = start(&["127.0.0.1"]).await;
    let addr = proxy.local_addr();
    let mut tunnels = Vec::new();
    for _ in 0..10 {
        tunnels.push(open_tunnel(addr, &echo.to_string()).await);
    }
    // All ten are open at once; now exchange data on all of them concurrently.
    let tasks: Vec<_> = tunnels
        .into_iter()
        .enumerate()
        .map(|(i, mut t)| {
            tokio::spawn(async move {
                let payload = format!("tunnel {i} ").repeat(1000);
                echo_round_trip(&mut t, payload.as_bytes()).await;
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("tunnel task");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 10);
    assert_eq!(taken(&decisions).len(), 10);
    proxy.stop().await;
}

#[tokio::test]
async fn stop_ends_open_tunnels_and_stops_accepting() {
    let (echo, _) = echo_server().await;
    let (proxy, _decisions) = start(&["127.0.0.1"]).await;
    let addr = proxy.local_addr();
    let mut tunnel = open_tunnel(addr, &echo.to_string()).await;
    echo_round_trip(&mut tunnel, b"before stop").await;
    tokio::time::timeout(WAIT, proxy.stop())
        .await
        .expect("stop in time");
    assert_closed(&mut tunnel).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after stop"
    );
}

#[tokio::test]
async fn set_allowlist_applies_to_the_next_request() {
    let (echo, _) = echo_server().await;
    let (proxy, decisions) = start(&["example.com"]).await;
    let connect = format!("CONNECT {echo} HTTP/1.1\r\n\r\n");
    let response = exchange(proxy.local_addr(), connect.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");

    proxy.set_allowlist(allowlist(&["127.0.0.1"]));
    let mut tunnel = open_tunnel(proxy.local_addr(), &echo.to_string()).await;
    echo_round_trip(&mut tunnel, b"now allowed").await;

    proxy.set_allowlist(Allowlist::default());
    let response = exchange(proxy.local_addr(), connect.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    let allowed: Vec<bool> = taken(&decisions).iter().map(|d| d.allowed).collect();
    assert_eq!(allowed, [false, true, false]);
    proxy.stop().await;
}

#[tokio::test]
async fn idle_tunnels_are_closed() {
    let (echo, _) = echo_server().await;
    let mut config = ProxyConfig::new(allowlist(&["127.0.0.1"]));
    config.allow_loopback = true;
    config.idle_timeout = Duration::from_millis(300);
    let (proxy, _decisions) = start_with(config).await;
    let mut tunnel = open_tunnel(proxy.local_addr(), &echo.to_string()).await;
    // Traffic keeps it open past the idle timeout...
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        echo_round_trip(&mut tunnel, b"keepalive").await;
    }
    // ...silence ends it.
    let started = std::time::Instant::now();
    assert_closed(&mut tunnel).await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    proxy.stop().await;
}

#[tokio::test]
async fn decisions_serialize_to_json() {
    let (proxy, decisions) = start(&[]).await;
    exchange(
        proxy.local_addr(),
        b"CONNECT example.net:443 HTTP/1.1\r\n\r\n",
    )
    .await;
    let d = taken(&decisions).remove(0);
    let json = serde_json::to_value(&d).expect("serialize");
    assert_eq!(json["host"], "example.net");
    assert_eq!(json["port"], 443);
    assert_eq!(json["allowed"], false);
    assert_eq!(json["method"], "CONNECT");
    assert_eq!(json["client"], d.client.to_string());
    let at = json["at"].as_str().expect("at");
    assert!(
        at.len() >= 20 && at.as_bytes()[10] == b'T' && at.ends_with('Z'),
        "{at}"
    );
    proxy.stop().await;
}

fn curl(args: &[String]) -> Option<std::process::Output> {
    let output = std::process::Command::new("curl")
        .args(args)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .output();
    match output {
        Ok(output) => Some(output),
        Err(e) => {
            println!("skipping the curl test: cannot run curl ({e})");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_the_proxy() {
    let (origin, _seen) = origin_server().await;
    let (proxy, decisions) = start(&["127.0.0.1"]).await;
    let proxy_url = format!("http://{}", proxy.local_addr());
    for (extra, method) in [(None, "GET"), (Some("--proxytunnel"), "CONNECT")] {
        let mut args = vec![
            "-sS".to_string(),
            "--max-time".into(),
            "10".into(),
            "-x".into(),
            proxy_url.clone(),
        ];
        args.extend(extra.map(String::from));
        args.push(format!("http://{origin}/via-curl"));
        let Some(output) = tokio::task::spawn_blocking(move || curl(&args))
            .await
            .expect("curl task")
        else {
            return;
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{method}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(stdout, "origin saw GET /via-curl HTTP/1.1", "{method}");
        let d = taken(&decisions);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].method.as_str(), d[0].allowed), (method, true));
    }

    let args = vec![
        "-sS".to_string(),
        "-o".into(),
        "/dev/null".into(),
        "-w".into(),
        "%{http_code}".into(),
        "-x".into(),
        proxy_url,
        "http://example.invalid/".into(),
    ];
    let Some(output) = tokio::task::spawn_blocking(move || curl(&args))
        .await
        .expect("curl task")
    else {
        return;
    };
    assert_eq!(String::from_utf8_lossy(&output.stdout), "403");
    proxy.stop().await;
}
