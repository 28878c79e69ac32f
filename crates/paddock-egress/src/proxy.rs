//! The running proxy: accept loop, policy, tunnels and forwarding.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
    ReadBuf,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::addr::blocked_reason;
use crate::allowlist::Host;
use crate::head::{read_request, Rejection, Request, Target, MAX_HEAD};
use crate::{Allowlist, Decision, EgressError, ProxyConfig};

/// The decision callback.
type OnDecision = Arc<dyn Fn(&Decision) + Send + Sync>;

/// A running egress proxy. Dropping it (like [`EgressProxy::stop`], without waiting) stops it.
pub struct EgressProxy {
    local_addr: SocketAddr,
    allow: Arc<RwLock<Arc<Allowlist>>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressProxy")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// Settings shared by all connections.
struct Shared {
    allow: Arc<RwLock<Arc<Allowlist>>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    block_private: bool,
    allow_loopback: bool,
    on_decision: OnDecision,
}

impl Shared {
    fn allowlist(&self) -> Arc<Allowlist> {
        match self.allow.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn decide(
        &self,
        client: SocketAddr,
        method: &str,
        host: &str,
        port: u16,
        allowed: bool,
        reason: String,
    ) {
        let decision = Decision {
            at: now_rfc3339(),
            client,
            method: method.to_owned(),
            host: host.to_owned(),
            port,
            allowed,
            reason,
        };
        info!(
            target: "paddock_egress",
            client = %decision.client,
            method = %decision.method,
            host = %decision.host,
            port = decision.port,
            allowed = decision.allowed,
            reason = %decision.reason,
            "egress decision"
        );
        (self.on_decision)(&decision);
    }
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

impl EgressProxy {
    /// Starts serving proxy requests on `listener`. `on_decision` is called once per request,
    /// on the connection's task: keep it quick.
    pub async fn start(
        listener: TcpListener,
        config: ProxyConfig,
        on_decision: Arc<dyn Fn(&Decision) + Send + Sync>,
    ) -> EgressProxy {
        let local_addr = listener.local_addr().unwrap_or_else(|e| {
            warn!(target: "paddock_egress", error = %e, "cannot read the listener's address");
            SocketAddr::from(([0, 0, 0, 0], 0))
        });
        let allow = Arc::new(RwLock::new(Arc::new(config.allow)));
        let shared = Arc::new(Shared {
            allow: Arc::clone(&allow),
            connect_timeout: config.connect_timeout,
            idle_timeout: config.idle_timeout,
            block_private: config.block_private,
            allow_loopback: config.allow_loopback,
            on_decision,
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, shared, stop_rx));
        info!(target: "paddock_egress", addr = %local_addr, "egress proxy listening");
        EgressProxy {
            local_addr,
            allow,
            stop,
            task,
        }
    }

    /// The address the proxy listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Replaces the allowlist; requests read after this call use the new one (open tunnels
    /// are not affected).
    pub fn set_allowlist(&self, allow: Allowlist) {
        let allow = Arc::new(allow);
        match self.allow.write() {
            Ok(mut guard) => *guard = allow,
            Err(poisoned) => *poisoned.into_inner() = allow,
        }
    }

    /// Stops accepting, ends every open tunnel and forwarded exchange, and waits for them.
    pub async fn stop(self) {
        // Fails only if every receiver is gone, i.e. everything has already stopped.
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            warn!(target: "paddock_egress", error = %e, "egress proxy task failed");
        }
        info!(target: "paddock_egress", addr = %self.local_addr, "egress proxy stopped");
    }
}

/// Resolves once stop was requested (or the proxy handle was dropped).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: the proxy was dropped, so stop too.
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop_rx: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            () = stopped(&mut stop_rx) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let shared = Arc::clone(&shared);
                    let mut rx = stop_rx.clone();
                    conns.spawn(async move {
                        tokio::select! {
                            () = serve(stream, peer, &shared) => {}
                            () = stopped(&mut rx) => {
                                debug!(target: "paddock_egress", client = %peer, "connection ended by stop");
                            }
                        }
                    });
                }
                Err(e) => {
                    // E.g. out of file descriptors: do not spin.
                    warn!(target: "paddock_egress", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(joined) = conns.join_next(), if !conns.is_empty() => log_join(joined),
        }
    }
    drop(listener);
    while let Some(joined) = conns.join_next().await {
        log_join(joined);
    }
}

fn log_join(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined {
        warn!(target: "paddock_egress", error = %e, "connection task failed");
    }
}

/// Serves one client connection (one request).
async fn serve(mut client: TcpStream, peer: SocketAddr, sh: &Shared) {
    let _ = client.set_nodelay(true);
    let (req, leftover) = match read_request(&mut client, sh.idle_timeout).await {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return,
        Err(Rejection {
            status,
            method,
            reason,
        }) => {
            let body = format!("paddock-egress: {reason}\n");
            sh.decide(peer, &method, "", 0, false, reason);
            respond(&mut client, status, &body).await;
            return;
        }
    };
    let host = req.host.to_string();
    let port = req.port;
    let deny = |status: u16, reason: String| {
        let body = format!("paddock-egress: access to {host}:{port} denied: {reason}\n");
        sh.decide(peer, &req.method, &host, port, false, reason);
        (status, body)
    };

    let framing = match &req.target {
        Target::Connect => BodyFraming::None,
        Target::Forward { .. } => match body_framing(&req) {
            Ok(framing) => framing,
            Err(e) => {
                let (status, body) = deny(400, e.to_string());
                return respond(&mut client, status, &body).await;
            }
        },
    };
    let allow = sh.allowlist();
    let Some(pattern) = allow.allows(&host) else {
        let (status, body) = deny(403, "not in the allowlist".into());
        return respond(&mut client, status, &body).await;
    };
    let addrs = match resolve(&req.host, port, sh.connect_timeout).await {
        Ok(addrs) => addrs,
        Err(e) => {
            let (status, body) = deny(502, format!("cannot resolve host: {e}"));
            return respond(&mut client, status, &body).await;
        }
    };
    if let Some((ip, why)) = addrs.iter().find_map(|a| {
        Some((
            a.ip(),
            blocked_reason(a.ip(), sh.allow_loopback, sh.block_private)?,
        ))
    }) {
        let (status, body) = deny(403, format!("blocked address {ip} ({why})"));
        return respond(&mut client, status, &body).await;
    }
    sh.decide(
        peer,
        &req.method,
        &host,
        port,
        true,
        format!("allowed by {pattern}"),
    );
    drop(allow);

    let upstream = match connect_any(&addrs, sh.connect_timeout).await {
        Ok(upstream) => upstream,
        Err(e) => {
            warn!(target: "paddock_egress", client = %peer, host = %host, port, error = %e, "cannot connect upstream");
            let body = format!("paddock-egress: cannot connect to {host}:{port}: {e}\n");
            return respond(&mut client, 502, &body).await;
        }
    };
    let result = match &req.target {
        Target::Connect => tunnel(client, upstream, leftover, sh.idle_timeout).await,
        Target::Forward { path } => {
            let exchange = Exchange {
                req: &req,
                path,
                framing,
                leftover,
            };
            forward(client, upstream, exchange, sh.idle_timeout).await
        }
    };
    if let Err(e) = result {
        debug!(target: "paddock_egress", client = %peer, host = %host, port, error = %e, "exchange ended with an error");
    }
}

async fn resolve(host: &Host, port: u16, limit: Duration) -> Result<Vec<SocketAddr>, EgressError> {
    let addrs: Vec<SocketAddr> = match host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, port)],
        Host::Name(name) => {
            tokio::time::timeout(limit, tokio::net::lookup_host((name.as_str(), port)))
                .await
                .map_err(|_| EgressError::Timeout("resolving the host"))??
                .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
                .collect()
        }
    };
    if addrs.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no addresses").into());
    }
    Ok(addrs)
}

async fn connect_any(addrs: &[SocketAddr], limit: Duration) -> Result<TcpStream, EgressError> {
    let deadline = Instant::now() + limit;
    let mut last = EgressError::Timeout("connecting");
    for addr in addrs {
        match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last = e.into(),
            Err(_) => return Err(EgressError::Timeout("connecting")),
        }
    }
    Err(last)
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        _ => "Error",
    }
}

/// Sends a short text response and closes the connection.
async fn respond(client: &mut TcpStream, status: u16, body: &str) {
    let msg = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason_phrase(status),
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        client.write_all(msg.as_bytes()).await?;
        client.shutdown().await?;
        // Drain (bounded) what the client already sent, so closing does not reset the
        // connection and destroy the response before the client reads it.
        let mut sink = [0u8; 4096];
        let mut drained = 0usize;
        while drained < 64 * 1024 {
            match tokio::time::timeout(Duration::from_millis(500), client.read(&mut sink)).await {
                Ok(Ok(n)) if n > 0 => drained += n,
                _ => break,
            }
        }
        Ok::<(), io::Error>(())
    })
    .await;
}

/// Last traffic time of one exchange, for the idle timeout.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once there was no traffic for `idle`.
    async fn idle(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let quiet = last.elapsed();
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    }
}

/// A stream that records traffic in an [`Activity`].
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    fn new(inner: S, activity: &Arc<Activity>) -> Self {
        Tracked {
            inner,
            activity: Arc::clone(activity),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// `CONNECT`: answer 200 and copy bytes both ways until a side closes or traffic stops.
async fn tunnel(
    mut client: TcpStream,
    mut upstream: TcpStream,
    leftover: Vec<u8>,
    idle: Duration,
) -> Result<(), EgressError> {
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    if !leftover.is_empty() {
        upstream.write_all(&leftover).await?;
    }
    let activity = Activity::new();
    let mut client = Tracked::new(client, &activity);
    let mut upstream = Tracked::new(upstream, &activity);
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            copied?;
            Ok(())
        }
        () = activity.idle(idle) => Err(EgressError::Timeout("waiting for tunnel traffic")),
    }
}

/// Whether a header is hop-by-hop (or rewritten by us) and so not forwarded.
fn is_hop_by_hop(name: &str, listed_in_connection: &[String]) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("proxy-")
        || matches!(
            name.as_str(),
            "connection" | "keep-alive" | "te" | "upgrade" | "host"
        )
        || listed_in_connection.contains(&name)
}

/// How the request body is framed.
enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

fn body_framing(req: &Request) -> Result<BodyFraming, EgressError> {
    let bad = |why: &str| EgressError::BadRequest(why.to_owned());
    let values = |wanted: &str| -> Vec<String> {
        req.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(wanted))
            .flat_map(|(_, v)| {
                String::from_utf8_lossy(v)
                    .split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let te = values("transfer-encoding");
    let cl = values("content-length");
    if !te.is_empty() {
        if !cl.is_empty() {
            return Err(bad("both Content-Length and Transfer-Encoding"));
        }
        if te.last().map(String::as_str) != Some("chunked") {
            return Err(bad("unsupported Transfer-Encoding"));
        }
        return Ok(BodyFraming::Chunked);
    }
    let Some(first) = cl.first() else {
        return Ok(BodyFraming::None);
    };
    if cl.iter().any(|v| v != first)
        || first.is_empty()
        || first.len() > 19
        || !first.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad("invalid Content-Length"));
    }
    first
        .parse()
        .map(BodyFraming::Length)
        .map_err(|_| bad("invalid Content-Length"))
}

/// What [`forward`] sends to the origin.
struct Exchange<'a> {
    req: &'a Request,
    /// Origin-form request target.
    path: &'a str,
    framing: BodyFraming,
    /// Bytes the client sent after the request head.
    leftover: Vec<u8>,
}

/// Absolute-form request: send it to the origin in origin-form, stream the body there and the
/// response back, then close.
async fn forward(
    client: TcpStream,
    upstream: TcpStream,
    exchange: Exchange<'_>,
    idle: Duration,
) -> Result<(), EgressError> {
    let Exchange {
        req,
        path,
        framing,
        leftover,
    } = exchange;
    let connection_tokens: Vec<String> = req
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut head = Vec::with_capacity(MAX_HEAD);
    head.extend_from_slice(
        format!("{} {path} HTTP/1.{}\r\n", req.method, req.minor_version).as_bytes(),
    );
    let host = match req.host {
        Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
        ref other => other.to_string(),
    };
    if req.port == 80 {
        head.extend_from_slice(format!("Host: {host}\r\n").as_bytes());
    } else {
        head.extend_from_slice(format!("Host: {host}:{}\r\n", req.port).as_bytes());
    }
    for (name, value) in &req.headers {
        if !is_hop_by_hop(name, &connection_tokens) {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        }
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");

    let activity = Activity::new();
    let (client_rd, client_wr) = client.into_split();
    let (up_rd, up_wr) = upstream.into_split();
    let mut client_wr = Tracked::new(client_wr, &activity);
    let mut up_rd = Tracked::new(up_rd, &activity);
    let mut up_wr = Tracked::new(up_wr, &activity);
    let mut body = BufReader::new(Tracked::new(
        io::Cursor::new(leftover).chain(client_rd),
        &activity,
    ));

    let send = async {
        up_wr.write_all(&head).await?;
        match framing {
            BodyFraming::None => {}
            BodyFraming::Length(n) => copy_exact(&mut body, &mut up_wr, n).await?,
            BodyFraming::Chunked => copy_chunked(&mut body, &mut up_wr).await?,
        }
        up_wr.flush().await?;
        Ok::<(), EgressError>(())
    };
    let receive = async {
        let copied = tokio::io::copy(&mut up_rd, &mut client_wr).await?;
        if copied == 0 {
            let body = "paddock-egress: the origin closed without responding\n";
            let msg = format!(
                "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            client_wr.write_all(msg.as_bytes()).await?;
        }
        client_wr.shutdown().await?;
        Ok::<(), EgressError>(())
    };
    tokio::pin!(send, receive);
    let mut sent = false;
    loop {
        tokio::select! {
            result = &mut send, if !sent => {
                result?;
                sent = true;
            }
            result = &mut receive => return result,
            () = activity.idle(idle) => return Err(EgressError::Timeout("waiting for traffic")),
        }
    }
}

async fn copy_exact<R, W>(r: &mut R, w: &mut W, n: u64) -> Result<(), EgressError>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let copied = tokio::io::copy(&mut r.take(n), w).await?;
    if copied != n {
        return Err(EgressError::BadRequest("request body ended early".into()));
    }
    Ok(())
}

/// Reads one line (with its `\n`) of at most `max` bytes.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    line: &mut Vec<u8>,
    max: u64,
) -> Result<(), EgressError> {
    line.clear();
    r.take(max).read_until(b'\n', line).await?;
    if line.last() != Some(&b'\n') {
        return Err(EgressError::BadRequest("bad chunked body line".into()));
    }
    Ok(())
}

fn is_blank_line(line: &[u8]) -> bool {
    line == b"\r\n" || line == b"\n"
}

/// Passes a chunked body through verbatim, checking its framing so that exactly the body
/// (and nothing the client sends after it) reaches the origin.
async fn copy_chunked<R, W>(r: &mut R, w: &mut W) -> Result<(), EgressError>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let bad = |why: &str| EgressError::BadRequest(why.to_owned());
    let mut line = Vec::with_capacity(64);
    loop {
        read_line(r, &mut line, 1024).await?;
        let text = std::str::from_utf8(&line).map_err(|_| bad("bad chunk size"))?;
        let size = text.split(';').next().unwrap_or_default().trim();
        if size.is_empty() || size.len() > 15 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("bad chunk size"));
        }
        let size = u64::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
        w.write_all(&line).await?;
        if size == 0 {
            let mut trailers = 0usize;
            loop {
                read_line(r, &mut line, 1024).await?;
                trailers += line.len();
                if trailers > MAX_HEAD {
                    return Err(bad("chunked trailers too large"));
                }
                w.write_all(&line).await?;
                if is_blank_line(&line) {
                    return Ok(());
                }
            }
        }
        let copied = tokio::io::copy(&mut r.take(size), w).await?;
        if copied != size {
            return Err(bad("request body ended early"));
        }
        read_line(r, &mut line, 3).await?;
        if !is_blank_line(&line) {
            return Err(bad("chunk not followed by CRLF"));
        }
        w.write_all(&line).await?;
    }
}
