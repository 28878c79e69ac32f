//! The worker's command line, shared by the `paddock-worker` binary and `paddock worker`.
//! See `docs/worker-protocol.md` for the HTTP contract.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::{Listener, LogRing, Worker, WorkerConfig, TOKEN_ENV};

const USAGE: &str = "\
paddock-worker — Paddock's in-sandbox worker (HTTP/1.1 + JSON)

USAGE:
    paddock-worker --workspace DIR [--socket PATH] [--listen ADDR --token TOKEN] [OPTIONS]

At least one of --socket and --listen is required.

OPTIONS:
    --workspace DIR          Directory all file routes and exec cwds are confined to (required)
    --socket PATH            Serve on a Unix socket at PATH (a stale socket file is replaced)
    --socket-mode OCTAL      Permissions of the socket file (e.g. 0660) [default: as created]
    --listen ADDR            Serve on TCP ADDR (e.g. 0.0.0.0:7070); requires a token
    --token TOKEN            Bearer token (default: $PADDOCK_WORKER_TOKEN); required for --listen,
                             and when set, required on every route but /healthz
    --kill-grace-ms N        SIGTERM→SIGKILL grace when an exec is stopped [default: 2000]
    --drain-timeout-ms N     How long output pipes may outlive an exec's leader [default: 2000]
    --max-write-bytes N      Largest PUT /files/write body [default: 1073741824]
    --output-ring-bytes N    Recent exec output kept for GET /logs [default: 1048576]
    --log-lines N            Worker log lines kept for GET /logs [default: 1000]
    --log-format text|json   Log format on stderr [default: text]; RUST_LOG filters (default info)
    --no-reap                Do not become a child subreaper / reap orphaned zombies
    --landlock               Before anything runs, restrict the worker and everything it starts
                             (Landlock) to the workspace, the socket's directory and each
                             --writable PATH, plus the system directories read-only
    --writable PATH          With --landlock: another writable directory (repeatable)
    --readable PATH          With --landlock: another read-only directory (repeatable)
    -h, --help               Print this help
    -V, --version            Print the version
";

struct Args {
    workspace: Option<PathBuf>,
    socket: Option<PathBuf>,
    socket_mode: Option<u32>,
    listen: Option<SocketAddr>,
    token: Option<String>,
    kill_grace_ms: u64,
    drain_timeout_ms: u64,
    max_write_bytes: u64,
    output_ring_bytes: usize,
    log_lines: usize,
    json_logs: bool,
    reap: bool,
    landlock: bool,
    writable: Vec<PathBuf>,
    readable: Vec<PathBuf>,
}

enum Parsed {
    Run(Box<Args>),
    Help,
    Version,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut a = Args {
        workspace: None,
        socket: None,
        socket_mode: None,
        listen: None,
        token: None,
        kill_grace_ms: 2000,
        drain_timeout_ms: 2000,
        max_write_bytes: 1024 * 1024 * 1024,
        output_ring_bytes: 1024 * 1024,
        log_lines: 1000,
        json_logs: false,
        reap: true,
        landlock: false,
        writable: vec![],
        readable: vec![],
    };
    fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
        v.parse()
            .map_err(|_| format!("{flag}: expected a non-negative integer, got {v:?}"))
    }
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |flag: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it.next().ok_or_else(|| format!("{flag} needs a value")),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-V" | "--version" => return Ok(Parsed::Version),
            "--workspace" => a.workspace = Some(PathBuf::from(value("--workspace")?)),
            "--landlock" => a.landlock = true,
            "--writable" => a.writable.push(PathBuf::from(value("--writable")?)),
            "--readable" => a.readable.push(PathBuf::from(value("--readable")?)),
            "--socket" => a.socket = Some(PathBuf::from(value("--socket")?)),
            "--socket-mode" => {
                let v = value("--socket-mode")?;
                let digits = v.strip_prefix("0o").unwrap_or(&v);
                a.socket_mode = Some(
                    u32::from_str_radix(digits, 8)
                        .ok()
                        .filter(|m| *m <= 0o777)
                        .ok_or_else(|| {
                            format!(
                                "--socket-mode: expected octal permissions like 0660, got {v:?}"
                            )
                        })?,
                );
            }
            "--listen" => {
                let v = value("--listen")?;
                a.listen = Some(
                    v.parse()
                        .map_err(|_| format!("--listen: expected ADDR:PORT, got {v:?}"))?,
                )
            }
            "--token" => a.token = Some(value("--token")?),
            "--kill-grace-ms" => {
                a.kill_grace_ms = num("--kill-grace-ms", value("--kill-grace-ms")?)?
            }
            "--drain-timeout-ms" => {
                a.drain_timeout_ms = num("--drain-timeout-ms", value("--drain-timeout-ms")?)?
            }
            "--max-write-bytes" => {
                a.max_write_bytes = num("--max-write-bytes", value("--max-write-bytes")?)?
            }
            "--output-ring-bytes" => {
                a.output_ring_bytes = num("--output-ring-bytes", value("--output-ring-bytes")?)?
            }
            "--log-lines" => a.log_lines = num("--log-lines", value("--log-lines")?)?,
            "--log-format" => match value("--log-format")?.as_str() {
                "text" => a.json_logs = false,
                "json" => a.json_logs = true,
                other => {
                    return Err(format!(
                        "--log-format: expected text or json, got {other:?}"
                    ))
                }
            },
            "--no-reap" => a.reap = false,
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    Ok(Parsed::Run(Box::new(a)))
}

fn init_tracing(ring: &std::sync::Arc<LogRing>, json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ring = ring.clone();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(move || ring.writer());
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn bind_socket(path: &PathBuf, mode: Option<u32>) -> Result<tokio::net::UnixListener, String> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(format!("{}: exists and is not a socket", path.display()));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "{}: another process is serving on it",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("{}: removing stale socket: {e}", path.display()))?;
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let listener =
        tokio::net::UnixListener::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("{}: setting mode {mode:o}: {e}", path.display()))?;
    }
    Ok(listener)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

async fn run(args: Args) -> Result<(), String> {
    let ring = LogRing::new(args.log_lines.max(1));
    init_tracing(&ring, args.json_logs);
    let workspace = args
        .workspace
        .ok_or("--workspace DIR is required (see --help)")?;
    if args.socket.is_none() && args.listen.is_none() {
        return Err("give --socket PATH and/or --listen ADDR (see --help)".into());
    }
    let token = args
        .token
        .or_else(|| std::env::var(TOKEN_ENV).ok())
        .filter(|t| !t.is_empty());
    if args.listen.is_some() && token.is_none() {
        return Err(format!(
            "--listen requires a bearer token (--token or ${TOKEN_ENV})"
        ));
    }
    let mut config = WorkerConfig::new(workspace);
    config.token = token;
    config.kill_grace = Duration::from_millis(args.kill_grace_ms);
    config.drain_timeout = Duration::from_millis(args.drain_timeout_ms);
    config.max_write_bytes = args.max_write_bytes;
    config.output_ring_bytes = args.output_ring_bytes;
    config.log_ring = Some(ring);
    config.reap_orphans = args.reap;
    config.relay_dir = args
        .socket
        .as_ref()
        .and_then(|p| p.parent())
        .map(|d| d.to_path_buf());
    let worker = Worker::new(config).map_err(|e| e.to_string())?;

    let mut listeners = Vec::new();
    if let Some(path) = &args.socket {
        listeners.push(Listener::Unix(bind_socket(path, args.socket_mode)?));
    }
    if let Some(addr) = args.listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("--listen {addr}: {e}"))?;
        listeners.push(Listener::Tcp(l));
    }
    tracing::info!(
        version = crate::VERSION,
        pid = std::process::id(),
        workspace = %worker.workspace().display(),
        socket = args.socket.as_ref().map(|p| p.display().to_string()),
        listen = args.listen.map(|a| a.to_string()),
        "paddock-worker listening"
    );
    let result = worker.serve(listeners, shutdown_signal()).await;
    if let Some(path) = &args.socket {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("stopped");
    result.map_err(|e| e.to_string())
}

/// Runs the worker with these arguments (without the program name).
pub fn main(argv: impl Iterator<Item = String>) -> ExitCode {
    let args = match parse_args(argv) {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("paddock-worker {}", crate::VERSION);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("paddock-worker: {e}");
            return ExitCode::from(2);
        }
    };
    if args.landlock {
        // Before the runtime: Landlock restricts the calling thread and what it starts.
        let spill = std::env::temp_dir().join("paddock-exec");
        let _ = std::fs::create_dir_all(&spill);
        let mut writable: Vec<PathBuf> = args.workspace.iter().cloned().collect();
        writable.extend(
            args.socket
                .as_ref()
                .and_then(|s| s.parent())
                .map(PathBuf::from),
        );
        writable.push(spill);
        writable.extend(args.writable.iter().cloned());
        match crate::confine::restrict(&writable, &args.readable) {
            Ok(c) if c.status == "not_enforced" => eprintln!(
                "paddock-worker: Landlock is not available in this kernel (ABI {}); running without it",
                c.abi
            ),
            Ok(_) => {}
            Err(e) => {
                eprintln!("paddock-worker: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("paddock-worker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(*args));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paddock-worker: {e}");
            ExitCode::FAILURE
        }
    }
}
