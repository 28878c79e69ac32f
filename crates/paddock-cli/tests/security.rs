//! Security and observability through a real `paddock serve`: tokens and roles, rate
//! limits, the audit trail, the vault (encryption at rest, rotation, no leaks), metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bwrap, data_dir, Serve};
use serde_json::{json, Value};
use std::process::Command;

const ADMIN: &str = "admin-token-for-tests-0123456789";
const CANARY: &str = "CANARY-s3cr3t-7f1d9a";

/// curl with a bearer token; returns (status, body, headers).
fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-D",
        "-",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
        url,
    ]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "content-type: application/json", "-d", &b.to_string()]);
    }
    let out = String::from_utf8_lossy(&cmd.output().expect("curl").stdout).into_owned();
    let (rest, code) = out.rsplit_once('\n').expect("status");
    let (headers, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
    let v = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    (
        code.trim().parse().expect("code"),
        v,
        headers.to_lowercase(),
    )
}

fn serve(dir: &std::path::Path, extra: &str) -> Serve {
    let p = dir.join("paddock.toml");
    std::fs::write(&p, format!("api_token = \"{ADMIN}\"\n{extra}")).expect("config");
    let mut s = Serve::start_with(dir, Some(&p));
    // Its runners are destroyed when it is dropped, with the admin token.
    s.token = Some(ADMIN.to_string());
    s
}

fn token(s: &Serve, role: &str) -> (String, String) {
    let (st, t, _) = call(
        "POST",
        &format!("{}/v1/tokens", s.url),
        Some(ADMIN),
        Some(json!({"name": role, "role": role})),
    );
    assert_eq!(st, 200, "{t}");
    (
        t["id"].as_str().expect("id").to_string(),
        t["token"].as_str().expect("shown once").to_string(),
    )
}

#[test]
fn roles_gate_every_route_class_and_tokens_can_be_revoked() {
    let d = data_dir();
    let s = serve(d.path(), "");
    let u = |p: &str| format!("{}{p}", s.url);
    let (_, viewer) = token(&s, "viewer");
    let (op_id, operator) = token(&s, "operator");

    // The secret is shown once: listing shows fingerprints only.
    let (_, list, _) = call("GET", &u("/v1/tokens"), Some(ADMIN), None);
    assert!(
        !list.to_string().contains(&operator),
        "a token's secret must not be listed"
    );
    assert_eq!(list["data"].as_array().expect("data").len(), 2);

    let agent_body = json!({"name": "a", "model": "m"});
    // (method, path, body, [no token, bad token, viewer, operator, admin])
    let cases: Vec<(&str, String, Option<Value>, [u16; 5])> = vec![
        ("GET", u("/v1/agents"), None, [401, 401, 200, 200, 200]),
        (
            "POST",
            u("/v1/agents"),
            Some(agent_body.clone()),
            [401, 401, 403, 200, 200],
        ),
        ("GET", u("/v1/tokens"), None, [401, 401, 403, 403, 200]),
        (
            "POST",
            u("/v1/vaults"),
            Some(json!({"display_name": "v"})),
            [401, 401, 403, 403, 200],
        ),
        ("GET", u("/v1/audit"), None, [401, 401, 200, 200, 200]),
        ("GET", u("/healthz"), None, [200, 200, 200, 200, 200]),
        ("GET", u("/metrics"), None, [200, 200, 200, 200, 200]),
    ];
    let who: [Option<&str>; 5] = [
        None,
        Some("wrong-token"),
        Some(&viewer),
        Some(&operator),
        Some(ADMIN),
    ];
    for (m, p, b, expect) in cases {
        for (i, t) in who.iter().enumerate() {
            let (st, v, _) = call(m, &p, *t, b.clone());
            assert_eq!(st, expect[i], "{m} {p} as #{i}: {v}");
            match st {
                401 => assert_eq!(v["error"]["type"], "authentication_error", "{v}"),
                403 => assert_eq!(v["error"]["type"], "permission_error", "{v}"),
                _ => {}
            }
        }
    }
    // Refusals are audited too, with who was refused.
    let (st, _, h) = call(
        "POST",
        &u("/v1/tokens"),
        Some(&viewer),
        Some(json!({"name": "x", "role": "admin"})),
    );
    assert_eq!(st, 403);
    let rid = h
        .lines()
        .find_map(|l| l.strip_prefix("request-id: "))
        .expect("request id")
        .trim()
        .to_string();
    let (_, rows, _) = call(
        "GET",
        &u("/v1/audit?action=tokens.*&limit=50"),
        Some(ADMIN),
        None,
    );
    let row = rows["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|r| r["request_id"].as_str().map(str::to_lowercase) == Some(rid.clone()))
        .cloned()
        .expect("the refused request is in the audit trail");
    assert_eq!(
        (row["status"].as_u64(), row["role"].as_str()),
        (Some(403), Some("viewer")),
        "{row}"
    );
    assert!(
        row["actor"].as_str().expect("actor").starts_with("token:"),
        "{row}"
    );
    let (st, _, _) = call(
        "POST",
        &u("/v1/agents"),
        None,
        Some(json!({"name": "anon", "model": "m"})),
    );
    assert_eq!(st, 401);
    let (_, rows, _) = call(
        "GET",
        &u("/v1/audit?action=agents.create&limit=5"),
        Some(ADMIN),
        None,
    );
    assert!(
        rows["data"].as_array().expect("data").iter().any(
            |r| r["status"] == 401 && r["actor"].as_str().is_some_and(|a| a.starts_with("ip:"))
        ),
        "{rows}"
    );
    // The scheme is case-insensitive; another Authorization scheme does not hide x-api-key.
    for headers in [
        vec![format!("Authorization: BEARER {viewer}")],
        vec![
            "Authorization: Basic Zm9vOmJhcg==".to_string(),
            format!("x-api-key: {viewer}"),
        ],
    ] {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}"]);
        for h in &headers {
            cmd.args(["-H", h]);
        }
        let out = cmd.arg(u("/v1/agents")).output().expect("curl");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{headers:?}");
    }
    // The SDK's x-api-key spelling works too.
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &format!("x-api-key: {viewer}"),
            &u("/v1/agents"),
        ])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");

    // Revoked and expired tokens stop working.
    let (st, _, _) = call(
        "DELETE",
        &u(&format!("/v1/tokens/{op_id}")),
        Some(ADMIN),
        None,
    );
    assert_eq!(st, 200);
    let (st, v, _) = call("GET", &u("/v1/agents"), Some(&operator), None);
    assert_eq!(st, 401, "{v}");
    let (st, v, _) = call(
        "POST",
        &u("/v1/tokens"),
        Some(ADMIN),
        Some(json!({"name": "old", "role": "viewer", "expires_at": "2020-01-01T00:00:00Z"})),
    );
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .expect("msg")
        .starts_with("expires_at"));

    // The CLI sends its token.
    let out = Command::new(common::BIN)
        .args(["--json", "agents", "list"])
        .env("PADDOCK_URL", &s.url)
        .env("PADDOCK_TOKEN", &viewer)
        .output()
        .expect("cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(common::BIN)
        .args(["agents", "list"])
        .env("PADDOCK_URL", &s.url)
        .output()
        .expect("cli");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401 authentication_error"));
}

#[test]
fn without_a_token_only_requests_to_localhost_are_answered() {
    let d = data_dir();
    let s = Serve::start(d.path());
    let url = format!("{}/v1/agents", s.url);
    let status = |headers: &[&str]| -> String {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}"]);
        for h in headers {
            cmd.args(["-H", h]);
        }
        String::from_utf8_lossy(&cmd.arg(&url).output().expect("curl").stdout).into_owned()
    };
    assert_eq!(status(&[]), "200");
    assert_eq!(status(&["Host: localhost:8080"]), "200");
    // DNS rebinding: a page's own name resolving to 127.0.0.1.
    assert_eq!(status(&["Host: rebind.example:8080"]), "403");
    // A cross-site request from a web page.
    assert_eq!(status(&["Origin: https://evil.example"]), "403");
    assert_eq!(status(&["Origin: http://localhost:3000"]), "200");
}

#[test]
fn without_a_token_paddock_refuses_to_listen_beyond_loopback() {
    let d = data_dir();
    let out = Command::new(common::BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(d.path())
        .output()
        .expect("serve");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a loopback address"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn floods_get_429_before_reaching_the_handlers() {
    let d = data_dir();
    let s = serve(d.path(), "[rate_limit]\nper_second = 1\nburst = 5\n");
    let mut created = 0;
    let mut limited = 0;
    for i in 0..20 {
        let (st, v, h) = call(
            "POST",
            &format!("{}/v1/agents", s.url),
            Some(ADMIN),
            Some(json!({"name": format!("a{i}"), "model": "m"})),
        );
        match st {
            200 => created += 1,
            429 => {
                limited += 1;
                assert_eq!(v["error"]["type"], "rate_limit_error");
                assert!(h.contains("retry-after:"), "{h}");
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert!((5..=7).contains(&created), "created {created}");
    assert_eq!(created + limited, 20);
    // Rejected requests never reached the handler: exactly `created` agents exist.
    let (_, list, _) = call(
        "GET",
        &format!("{}/v1/agents?limit=100", s.url),
        Some("x"),
        None,
    );
    assert_eq!(
        list["error"]["type"], "rate_limit_error",
        "a made-up token does not buy a fresh bucket (the limit is per address before auth)"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (st, list, _) = call(
        "GET",
        &format!("{}/v1/agents?limit=100", s.url),
        Some(ADMIN),
        None,
    );
    assert_eq!(st, 200);
    assert_eq!(list["data"].as_array().expect("data").len(), created);
    for _ in 0..10 {
        let (st, _, _) = call("GET", &format!("{}/healthz", s.url), None, None);
        assert_eq!(st, 200, "/healthz is never limited");
    }
    let (_, metrics, _) = call("GET", &format!("{}/metrics", s.url), None, None);
    let text = metrics.as_str().expect("text").to_string();
    let n: f64 = text
        .lines()
        .find(|l| l.starts_with("paddock_rate_limited_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .expect("counter");
    assert!(n >= limited as f64, "{n} < {limited}");
}

#[test]
fn every_mutating_route_is_audited() {
    let d = data_dir();
    let s = serve(d.path(), "");
    let doc: Value =
        serde_json::from_str(include_str!("../../paddock-server/openapi.json")).expect("openapi");
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for method in ["post", "put", "delete"] {
            if ops.get(method).is_none() {
                continue;
            }
            let concrete: String = path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "nope_0" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            let m = method.to_uppercase();
            let (st, v, h) = call(
                &m,
                &format!("{}{concrete}", s.url),
                Some(ADMIN),
                Some(json!({})),
            );
            assert!(st > 0, "{m} {path}: {v}");
            let rid = h
                .lines()
                .find_map(|l| l.strip_prefix("request-id: "))
                .expect("request id")
                .trim()
                .to_string();
            let (_, rows, _) = call(
                "GET",
                &format!("{}/v1/audit?limit=5", s.url),
                Some(ADMIN),
                None,
            );
            let row = rows["data"]
                .as_array()
                .expect("data")
                .iter()
                .find(|r| r["request_id"].as_str().map(str::to_lowercase) == Some(rid.clone()))
                .unwrap_or_else(|| panic!("no audit row for {m} {path} ({st})"))
                .clone();
            assert_eq!(row["metadata"]["route"], path.as_str(), "{row}");
            assert_eq!(row["status"], st, "{row}");
            assert!(row["actor"] == "admin", "{row}");
            assert!(
                row["action"]
                    .as_str()
                    .is_some_and(|a| a.contains('.') && a != "unrouted"),
                "{row}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 27, "only {checked} mutating routes found");
    // Filters: wildcards, newest first.
    let (_, rows, _) = call(
        "GET",
        &format!("{}/v1/audit?action=agents.*&limit=100", s.url),
        Some(ADMIN),
        None,
    );
    let actions: Vec<&str> = rows["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    assert!(
        !actions.is_empty() && actions.iter().all(|a| a.starts_with("agents.")),
        "{actions:?}"
    );
    let (_, rows, _) = call(
        "GET",
        &format!("{}/v1/audit?target=nope_*&limit=1000", s.url),
        Some(ADMIN),
        None,
    );
    let ats: Vec<&str> = rows["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|r| r["at"].as_str())
        .collect();
    let mut sorted = ats.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ats, sorted, "newest first");
}

#[test]
fn vault_secrets_are_encrypted_write_only_and_never_leak() {
    let d = data_dir();
    let s = serve(d.path(), "");
    let u = |p: &str| format!("{}{p}", s.url);
    let mut seen = String::new();
    let mut api = |m: &str, p: &str, b: Option<Value>| {
        let (st, v, _) = call(m, &u(p), Some(ADMIN), b);
        seen.push_str(&v.to_string());
        (st, v)
    };
    let (st, vault) = api(
        "POST",
        "/v1/vaults",
        Some(json!({"display_name": "team", "metadata": {"k": "v"}})),
    );
    assert_eq!(st, 200, "{vault}");
    let vid = vault["id"].as_str().expect("id").to_string();
    assert!(vid.starts_with("vlt_"));
    let auths = [
        json!({"type": "static_bearer", "token": CANARY, "mcp_server_url": "https://mcp.example.com"}),
        json!({"type": "mcp_oauth", "access_token": CANARY, "mcp_server_url": "https://mcp.example.com", "refresh": {"client_id": "c", "refresh_token": CANARY, "token_endpoint": "https://auth.example.com/token", "token_endpoint_auth": {"type": "client_secret_post", "client_secret": CANARY}}}),
        json!({"type": "environment_variable", "secret_name": "API_KEY", "secret_value": CANARY, "networking": {"type": "unrestricted"}}),
    ];
    let mut creds = vec![];
    for a in auths {
        let (st, c) = api(
            "POST",
            &format!("/v1/vaults/{vid}/credentials"),
            Some(json!({"auth": a, "display_name": "c"})),
        );
        assert_eq!(st, 200, "{c}");
        assert!(c["id"].as_str().expect("id").starts_with("vcrd_"));
        creds.push(c["id"].as_str().expect("id").to_string());
    }
    let (_, c) = api(
        "GET",
        &format!("/v1/vaults/{vid}/credentials/{}", creds[1]),
        None,
    );
    assert_eq!(
        c["auth"]["refresh"]["token_endpoint_auth"],
        json!({"type": "client_secret_post"})
    );
    let (st, err) = api(
        "POST",
        &format!("/v1/vaults/{vid}/credentials/{}", creds[2]),
        Some(json!({"auth": {"type": "environment_variable", "secret_name": "OTHER"}})),
    );
    assert_eq!(st, 400, "names are immutable: {err}");
    let (st, _) = api(
        "POST",
        &format!("/v1/vaults/{vid}/credentials/{}", creds[0]),
        Some(json!({"auth": {"type": "static_bearer", "token": format!("{CANARY}-2")}})),
    );
    assert_eq!(st, 200, "secrets can be replaced");
    let (st, err) = api(
        "POST",
        &format!("/v1/vaults/{vid}/credentials"),
        Some(
            json!({"auth": {"type": "static_bearer", "token": 12345, "mcp_server_url": "https://x"}}),
        ),
    );
    assert_eq!(st, 400);
    assert!(
        !err.to_string().contains("12345"),
        "errors never echo secret values: {err}"
    );
    let (st, err) = api(
        "POST",
        &format!("/v1/vaults/{vid}/credentials"),
        Some(
            json!({"auth": {"type": "static_bearer", "token": null, "mcp_server_url": "https://x"}}),
        ),
    );
    assert_eq!(st, 400, "a null secret is not a secret: {err}");
    api("GET", &format!("/v1/vaults/{vid}/credentials"), None);
    let (_, val) = api(
        "POST",
        &format!(
            "/v1/vaults/{vid}/credentials/{}/mcp_oauth_validate",
            creds[1]
        ),
        None,
    );
    assert_eq!(
        (val["status"].as_str(), val["has_refresh_token"].as_bool()),
        (Some("unknown"), Some(true))
    );

    // Sessions bind vaults; a runner of the session gets the environment_variable secret.
    let (_, agent) = api(
        "POST",
        "/v1/agents",
        Some(json!({"name": "a", "model": "m"})),
    );
    let (_, env) = api("POST", "/v1/environments", Some(json!({"name": "e"})));
    let (st, sess) = api(
        "POST",
        "/v1/sessions",
        Some(json!({"agent": agent["id"], "environment_id": env["id"], "vault_ids": [vid]})),
    );
    assert_eq!(st, 200, "{sess}");
    assert_eq!(sess["vault_ids"], json!([vid]));
    // Only admins bind vaults (a session's runners receive their secrets).
    let (_, op, _) = call(
        "POST",
        &u("/v1/tokens"),
        Some(ADMIN),
        Some(json!({"name": "op", "role": "operator"})),
    );
    let (st, e, _) = call(
        "POST",
        &u("/v1/sessions"),
        op["token"].as_str(),
        Some(json!({"agent": agent["id"], "environment_id": env["id"], "vault_ids": [vid]})),
    );
    assert_eq!(st, 403, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .expect("msg")
            .starts_with("vault_ids"),
        "{e}"
    );
    let (st, e) = api(
        "POST",
        "/v1/sessions",
        Some(json!({"agent": agent["id"], "environment_id": env["id"], "vault_ids": ["vlt_nope"]})),
    );
    assert_eq!(st, 404, "{e}");
    if bwrap() {
        let (st, r) = api(
            "POST",
            "/v1/runners",
            Some(json!({"session_id": sess["id"]})),
        );
        assert_eq!((st, r["state"].as_str()), (200, Some("running")), "{r}");
        let rid = r["id"].as_str().expect("id").to_string();
        let out = Command::new(common::BIN)
            .args(["runners", "exec", &rid, "--", "sh", "-c", "echo $API_KEY"])
            .env("PADDOCK_URL", &s.url)
            .env("PADDOCK_TOKEN", ADMIN)
            .output()
            .expect("exec");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{CANARY}\n"),
            "injected into the runner"
        );
        let (_, detail) = api("GET", &format!("/v1/runners/{rid}"), None);
        assert!(
            !detail.to_string().contains(CANARY),
            "the runner record never holds the secret"
        );
        api("DELETE", &format!("/v1/runners/{rid}?wait=true"), None);
        let (_, evs) = api(
            "GET",
            &format!(
                "/v1/sessions/{}/events?limit=1000",
                sess["id"].as_str().expect("id")
            ),
            None,
        );
        let _ = evs;
    }
    let (_, audit) = api("GET", "/v1/audit?limit=1000", None);
    let _ = audit;

    // At rest: only ciphertext in the database file.
    let (status, log) = s.terminate();
    assert!(status.success());
    assert!(
        !seen.contains(CANARY),
        "an API answer, the audit trail or an event contained the secret"
    );
    assert!(!log.contains(CANARY), "the server log contained the secret");
    let mut raw = Vec::new();
    for f in ["paddock.db", "paddock.db-wal"] {
        raw.extend(std::fs::read(d.path().join(f)).unwrap_or_default());
    }
    assert!(
        !raw.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
        "plaintext secret in the SQLite file"
    );
    let db = rusqlite_secret(d.path(), &creds[2]);
    assert!(db.starts_with("v1."), "{db}");
    let key_file = d.path().join("vault.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file)
            .expect("key file")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // Rotation: a new key, the old one as previous → every secret re-sealed at start.
    let old_key = std::fs::read_to_string(&key_file)
        .expect("key")
        .trim()
        .to_string();
    let new_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let s2 = serve(
        d.path(),
        &format!("[vault]\nkey = \"{new_key}\"\nprevious_keys = [\"{old_key}\"]\n"),
    );
    let rotated = rusqlite_secret(d.path(), &creds[2]);
    assert_ne!(
        rotated.split('.').nth(1),
        db.split('.').nth(1),
        "sealed under a new key fingerprint"
    );
    let (st, v, _) = call(
        "POST",
        &format!(
            "{}/v1/vaults/{vid}/credentials/{}/mcp_oauth_validate",
            s2.url, creds[1]
        ),
        Some(ADMIN),
        None,
    );
    assert_eq!(st, 200, "the rotated secret still opens: {v}");
    drop(s2);
    // With only the old key, secrets sealed under the new one cannot be opened: the
    // server refuses to start and says why, rather than run with unreadable secrets.
    let p = d.path().join("paddock.toml");
    std::fs::write(
        &p,
        format!("api_token = \"{ADMIN}\"\n[vault]\nkey = \"{old_key}\"\n"),
    )
    .expect("config");
    let out = Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&p)
        .arg("--data-dir")
        .arg(d.path())
        .output()
        .expect("serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("previous key"), "{err}");
    assert!(!err.contains(CANARY) && !err.contains(new_key), "{err}");
}

fn rusqlite_secret(dir: &std::path::Path, cred: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute('select secret from credentials where id=?',(sys.argv[2],)).fetchone()[0])"])
        .arg(dir.join("paddock.db"))
        .arg(cred)
        .output()
        .expect("python3 sqlite3");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn metrics_are_prometheus_text() {
    let d = data_dir();
    let s = serve(d.path(), "");
    call("GET", &format!("{}/v1/agents", s.url), Some(ADMIN), None);
    call(
        "GET",
        &format!("{}/v1/agents/agent_nope", s.url),
        Some(ADMIN),
        None,
    );
    let (st, body, h) = call("GET", &format!("{}/metrics", s.url), None, None);
    assert_eq!(st, 200);
    assert!(h.contains("content-type: text/plain; version=0.0.4"), "{h}");
    let text = body.as_str().expect("text").to_string();
    let exposition =
        openmetrics_parser::prometheus::parse_prometheus(&text).expect("valid Prometheus text");
    let families: Vec<&String> = exposition.families.keys().collect();
    for f in [
        "paddock_http_requests_total",
        "paddock_http_request_duration_seconds",
        "paddock_runners",
        "paddock_model_tokens_total",
        "paddock_rate_limited_total",
        "paddock_store_operation_duration_seconds",
    ] {
        assert!(
            families.iter().any(|k| k.as_str() == f),
            "missing {f}: {families:?}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("paddock_http_requests_total")
                && l.contains("route=\"/v1/agents/{agent_id}\"")
                && l.contains("status=\"404\"")),
        "requests are counted by route template and status:\n{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with(
            "paddock_store_operation_duration_seconds_count{operation=\"list_agents\"}"
        ) && l
            .split_whitespace()
            .last()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| v >= 1.0)),
        "store calls are timed by operation:\n{text}"
    );
    if bwrap() {
        let (st, r, _) = call(
            "POST",
            &format!("{}/v1/runners", s.url),
            Some(ADMIN),
            Some(json!({})),
        );
        assert_eq!(st, 200, "{r}");
        let rid = r["id"].as_str().expect("id");
        let (st, _, _) = call(
            "POST",
            &format!("{}/v1/runners/{rid}/exec", s.url),
            Some(ADMIN),
            Some(json!({"command": "true"})),
        );
        assert_eq!(st, 200);
        let (_, body, _) = call("GET", &format!("{}/metrics", s.url), None, None);
        let text = body.as_str().expect("text").to_string();
        let value = |prefix: &str| -> f64 {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0)
        };
        assert_eq!(
            value("paddock_runner_provision_duration_seconds_count{backend=\"local\"}"),
            1.0,
            "{text}"
        );
        assert!(
            value("paddock_runner_exec_duration_seconds_count{backend=\"local\"}") >= 1.0,
            "{text}"
        );
        assert_eq!(
            value("paddock_runners{state=\"running\",backend=\"local\"}"),
            1.0,
            "{text}"
        );
        call(
            "DELETE",
            &format!("{}/v1/runners/{rid}?wait=true", s.url),
            Some(ADMIN),
            None,
        );
    }
}
