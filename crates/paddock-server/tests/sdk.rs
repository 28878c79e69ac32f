//! Drives the server with the official `anthropic` Python SDK (tests/sdk/test_compat.py).
//! Needs `PADDOCK_SDK_PYTHON` (a Python with `anthropic` and `pytest`); `scripts/test`
//! sets it up. With `PADDOCK_REQUIRE_SDK=1` (as in CI) a missing SDK is a failure.

mod common;

use common::{tempdir, TestServer};
use std::path::PathBuf;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk_works_unmodified() {
    let Some(python) = std::env::var_os("PADDOCK_SDK_PYTHON") else {
        if std::env::var("PADDOCK_REQUIRE_SDK").as_deref() == Ok("1") {
            panic!("PADDOCK_REQUIRE_SDK=1 but PADDOCK_SDK_PYTHON is not set; run scripts/test");
        }
        eprintln!("SKIPPED official_python_sdk_works_unmodified: PADDOCK_SDK_PYTHON is not set (scripts/test sets it)");
        return;
    };
    let (_d, dir) = tempdir();
    // With a token configured: the SDK's `api_key` is its bearer token.
    let token = "paddock-sdk-compat-token-0123";
    let s = TestServer::start_with(paddock_server::Config {
        api_token: Some(token.into()),
        ..common::config(&dir)
    })
    .await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/sdk/test_compat.py");
    let base = s.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"])
            .arg(&script)
            .env("PADDOCK_URL", base)
            .env("PADDOCK_API_KEY", token)
            .output()
    })
    .await
    .expect("pytest task")
    .expect("pytest starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "the SDK tests failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed"), "no SDK test ran:\n{stdout}");
    assert!(
        !stdout.contains("skipped"),
        "SDK tests were skipped:\n{stdout}"
    );
    // The server really required the token the SDK sent.
    let (status, _) = s.get("/v1/agents").await;
    assert_eq!(status, 401, "requests without the token are refused");
    s.stop().await;
}
