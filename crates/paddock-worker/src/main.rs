//! `paddock-worker`: the process inside every Paddock sandbox.
//! See `docs/worker-protocol.md` for the HTTP contract.

fn main() -> std::process::ExitCode {
    paddock_worker::cli::main(std::env::args().skip(1))
}
