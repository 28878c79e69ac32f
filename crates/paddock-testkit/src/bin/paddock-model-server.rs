//! `paddock-model-server --script FILE.json [--listen ADDR]`: serves a scripted model
//! (OpenAI `POST /v1/chat/completions` and Anthropic `POST /v1/messages`) until
//! interrupted. The script format is documented in `paddock_testkit::model_server`.

use paddock_testkit::model_server::{ModelServer, Script};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: paddock-model-server --script FILE.json [--listen ADDR]

Serves a scripted model over the OpenAI (POST /v1/chat/completions) and
Anthropic (POST /v1/messages) wire formats, streaming or not.
  --script FILE.json   the script (format: paddock_testkit::model_server docs)
  --listen ADDR        address to listen on (default 127.0.0.1:0, a free port)";

fn parse_args() -> Result<(PathBuf, SocketAddr), String> {
    let mut script = None;
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        match flag.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--script" | "--listen" => {
                let value = inline
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{flag} needs a value"))?;
                if flag == "--script" {
                    script = Some(PathBuf::from(value));
                } else {
                    listen = value
                        .parse()
                        .map_err(|e| format!("--listen {value:?}: {e}"))?;
                }
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let script = script.ok_or_else(|| "--script is required".to_string())?;
    Ok((script, listen))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (path, listen) = match parse_args() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("paddock-model-server: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let script = match Script::from_file(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("paddock-model-server: cannot read the script: {e}");
            return ExitCode::from(2);
        }
    };
    let turns = script.turns.len();
    let mut server = match ModelServer::start_on(script, listen).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("paddock-model-server: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "paddock-model-server listening on {} ({turns} turns; OpenAI base URL {}, Anthropic base URL {})",
        server.base_url(),
        server.openai_base_url(),
        server.anthropic_base_url()
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = server.wait() => {}
    }
    ExitCode::SUCCESS
}
