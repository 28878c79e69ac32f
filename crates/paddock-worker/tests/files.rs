//! File routes and workspace confinement against an in-process worker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::{symlink, PermissionsExt};

use common::*;
use serde_json::json;

#[test]
fn write_read_list_stat_delete_round_trip() {
    let w = TestWorker::start();
    let resp = w.put(
        "/files/write?path=dir/sub/a.txt&mkdirs=true&mode=0600",
        b"hello world",
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.json(),
        json!({"path": "dir/sub/a.txt", "size": 11, "created": true, "mode": "0600"})
    );
    let on_disk = w.ws.join("dir/sub/a.txt");
    assert_eq!(std::fs::read(&on_disk).unwrap(), b"hello world");
    assert_eq!(
        std::fs::metadata(&on_disk).unwrap().permissions().mode() & 0o7777,
        0o600
    );

    let read = w.get("/files/read?path=dir/sub/a.txt");
    assert_eq!(read.status, 200);
    assert_eq!(read.body, b"hello world");
    assert_eq!(
        read.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(read.header("x-paddock-file-size"), Some("11"));
    assert_eq!(
        w.get("/files/read?path=dir/sub/a.txt&offset=6").body,
        b"world"
    );
    assert_eq!(
        w.get("/files/read?path=dir/sub/a.txt&offset=1&limit=3")
            .body,
        b"ell"
    );
    assert_eq!(w.get("/files/read?path=dir/sub/a.txt&offset=100").body, b"");

    // Overwrite: atomic replace, mode kept when not given.
    let resp = w.put("/files/write?path=dir/sub/a.txt", b"bye");
    assert_eq!(resp.json()["created"], false);
    assert_eq!(resp.json()["mode"], "0600");
    assert_eq!(w.get("/files/read?path=dir/sub/a.txt").body, b"bye");
    // No temporary files left behind.
    assert_eq!(std::fs::read_dir(w.ws.join("dir/sub")).unwrap().count(), 1);

    w.put("/files/write?path=dir/b.bin", &[0, 1, 2, 255]);
    let list = w.get("/files/list?path=dir");
    assert_eq!(list.status, 200);
    let list = list.json();
    assert_eq!(list["path"], "dir");
    assert_eq!(list["truncated"], false);
    let entries = list["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["name"], "b.bin");
    assert_eq!(entries[0]["type"], "file");
    assert_eq!(entries[0]["size"], 4);
    assert_eq!(entries[0]["mode"], "0644");
    assert_eq!(entries[0]["path"], "dir/b.bin");
    assert!(entries[0]["mtime_ms"].as_i64().unwrap() > 1_600_000_000_000);
    assert_eq!(entries[1]["name"], "sub");
    assert_eq!(entries[1]["type"], "dir");
    let root_list = w.get("/files/list").json();
    assert_eq!(root_list["path"], ".");
    assert_eq!(root_list["entries"][0]["name"], "dir");

    let stat = w.get("/files/stat?path=dir/b.bin").json();
    assert_eq!(stat["type"], "file");
    assert_eq!(stat["size"], 4);
    assert_eq!(w.get("/files/stat?path=.").json()["type"], "dir");
    assert_eq!(w.get("/files/read?path=dir/b.bin").body, vec![0, 1, 2, 255]);

    // Errors.
    w.get("/files/read?path=nope")
        .assert_error(404, "not_found");
    w.get("/files/stat?path=nope")
        .assert_error(404, "not_found");
    w.get("/files/read?path=dir")
        .assert_error(400, "not_a_file");
    w.get("/files/list?path=dir/b.bin")
        .assert_error(400, "not_a_directory");
    w.put("/files/write?path=dir", b"x")
        .assert_error(400, "not_a_file");
    w.put("/files/write?path=new/x.txt", b"x")
        .assert_error(404, "not_found");
    assert!(!exists(&w.ws.join("new")));
    w.delete("/files?path=dir")
        .assert_error(409, "directory_not_empty");
    w.delete("/files?path=.")
        .assert_error(403, "path_forbidden");

    let del = w.delete("/files?path=dir/b.bin");
    assert_eq!(del.status, 200);
    assert_eq!(
        del.json(),
        json!({"path": "dir/b.bin", "deleted": true, "type": "file"})
    );
    assert!(!exists(&w.ws.join("dir/b.bin")));
    w.delete("/files?path=dir/b.bin")
        .assert_error(404, "not_found");
    let del = w.delete("/files?path=dir&recursive=true");
    assert_eq!(del.json()["type"], "dir");
    assert!(!exists(&w.ws.join("dir")));
}

#[test]
fn large_files_round_trip() {
    let w = TestWorker::start();
    let data: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    assert_eq!(w.write_file("big.bin", &data).status, 200);
    let back = w.get("/files/read?path=big.bin");
    assert_eq!(
        back.header("content-length"),
        Some(data.len().to_string().as_str())
    );
    assert!(back.body == data);
}

#[test]
fn writes_over_the_limit_are_413_and_leave_nothing() {
    let w = TestWorker::start_with(|c| c.max_write_bytes = 1000);
    w.put("/files/write?path=big", &[1u8; 1001])
        .assert_error(413, "payload_too_large");
    assert!(!exists(&w.ws.join("big")));
    assert_eq!(
        std::fs::read_dir(&w.ws).unwrap().count(),
        0,
        "no temporary file left"
    );
    assert_eq!(w.put("/files/write?path=ok", &[1u8; 1000]).status, 200);
}

#[test]
fn query_errors_name_the_parameter() {
    let w = TestWorker::start();
    w.write_file("f", b"x");
    let e = w
        .get("/files/read?path=f&bogus=1")
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "bogus");
    let e = w.get("/files/read").assert_error(400, "invalid_request");
    assert_eq!(e["field"], "path");
    let e = w
        .get("/files/read?path=f&offset=-1")
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "offset");
    let e = w
        .put("/files/write?path=g&mode=999", b"x")
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "mode");
    let e = w
        .put("/files/write?path=g&mkdirs=maybe", b"x")
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "mkdirs");
    let e = w
        .delete("/files?path=f&recursive=yes")
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "recursive");
    let e = w
        .get("/files/read?path=a%00b")
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "path");
    let e = w
        .get("/files/list?limit=0")
        .assert_error(400, "invalid_request");
    assert_eq!(e["field"], "limit");
}

#[test]
fn dot_dot_escapes_are_forbidden() {
    let w = TestWorker::start();
    let parent = w.dir.path();
    for path in [
        "../x",
        "a/../../x",
        "%2e%2e/x",
        "./../x",
        "..",
        "../outside/pwned",
    ] {
        w.put(&format!("/files/write?path={path}&mkdirs=true"), b"pwned")
            .assert_error(403, "path_forbidden");
        w.get(&format!("/files/read?path={path}"))
            .assert_error(403, "path_forbidden");
        w.get(&format!("/files/stat?path={path}"))
            .assert_error(403, "path_forbidden");
        w.delete(&format!("/files?path={path}"))
            .assert_error(403, "path_forbidden");
    }
    w.get("/files/list?path=..")
        .assert_error(403, "path_forbidden");
    // A refused upload with a large body still gets its answer.
    w.put("/files/write?path=../big", &vec![b'x'; 2 * 1024 * 1024])
        .assert_error(403, "path_forbidden");
    assert!(!exists(&parent.join("big")));
    assert!(!exists(&parent.join("x")));
    assert!(!exists(&w.outside.join("pwned")));
    assert!(!exists(&w.ws.join("a")), "mkdirs created nothing");
}

#[test]
fn absolute_paths_outside_the_workspace_are_forbidden() {
    let w = TestWorker::start();
    let e = w
        .get("/files/read?path=/etc/passwd")
        .assert_error(403, "path_forbidden");
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("outside the workspace"));
    w.get("/files/list?path=/")
        .assert_error(403, "path_forbidden");
    let target = format!("{}/pwned", w.outside.display());
    w.put(&format!("/files/write?path={}", enc(&target)), b"x")
        .assert_error(403, "path_forbidden");
    assert!(!exists(&w.outside.join("pwned")));
    let sneaky = format!("{}/../outside/pwned", w.ws.display());
    w.put(&format!("/files/write?path={}", enc(&sneaky)), b"x")
        .assert_error(403, "path_forbidden");
    assert!(!exists(&w.outside.join("pwned")));
    // An absolute path inside the workspace is fine.
    let inside = format!("{}/in.txt", w.ws.display());
    let resp = w.put(&format!("/files/write?path={}", enc(&inside)), b"ok");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["path"], "in.txt");
    assert_eq!(std::fs::read(w.ws.join("in.txt")).unwrap(), b"ok");
}

#[test]
fn a_symlink_to_etc_inside_the_workspace_is_refused() {
    let w = TestWorker::start();
    symlink("/etc", w.ws.join("etc")).unwrap();
    w.get("/files/read?path=etc/passwd")
        .assert_error(403, "path_forbidden");
    w.get("/files/stat?path=etc/passwd")
        .assert_error(403, "path_forbidden");
    w.get("/files/list?path=etc")
        .assert_error(403, "path_forbidden");
    w.put("/files/write?path=etc/paddock-worker-pwned", b"x")
        .assert_error(403, "path_forbidden");
    w.put("/files/write?path=etc/newdir/pwned&mkdirs=true", b"x")
        .assert_error(403, "path_forbidden");
    w.delete("/files?path=etc/hostname")
        .assert_error(403, "path_forbidden");
    assert!(!exists(std::path::Path::new("/etc/paddock-worker-pwned")));
    assert!(!exists(std::path::Path::new("/etc/newdir")));
    assert!(exists(std::path::Path::new("/etc/passwd")));

    // The link itself is described (not followed) by stat ...
    let stat = w.get("/files/stat?path=etc").json();
    assert_eq!(stat["type"], "symlink");
    assert_eq!(stat["target"], "/etc");
    // ... listed as a link ...
    let list = w.get("/files/list").json();
    assert_eq!(list["entries"][0]["type"], "symlink");
    // ... and deleting it removes only the link.
    assert_eq!(w.delete("/files?path=etc").status, 200);
    assert!(!exists(&w.ws.join("etc")));
    assert!(exists(std::path::Path::new("/etc/passwd")));
}

#[test]
fn a_symlink_chain_escaping_the_workspace_is_refused() {
    let w = TestWorker::start();
    std::fs::create_dir(w.ws.join("sub")).unwrap();
    // l1 -> l2 -> sub/l3 -> ../../outside   (ends outside)
    symlink("l2", w.ws.join("l1")).unwrap();
    symlink("sub/l3", w.ws.join("l2")).unwrap();
    symlink("../../outside", w.ws.join("sub/l3")).unwrap();
    // abs -> <outside> (absolute target)
    symlink(&w.outside, w.ws.join("abs")).unwrap();
    // file link -> ../outside/secret
    std::fs::write(w.outside.join("secret"), b"secret").unwrap();
    symlink("../outside/secret", w.ws.join("secret")).unwrap();

    for path in ["l1/pwned", "l2/pwned", "sub/l3/pwned", "abs/pwned", "l1"] {
        w.put(&format!("/files/write?path={path}"), b"x")
            .assert_error(403, "path_forbidden");
        w.get(&format!("/files/read?path={path}"))
            .assert_error(403, "path_forbidden");
        w.get(&format!("/files/list?path={path}"))
            .assert_error(403, "path_forbidden");
    }
    w.get("/files/read?path=secret")
        .assert_error(403, "path_forbidden");
    w.put("/files/write?path=secret", b"overwritten")
        .assert_error(403, "path_forbidden");
    w.post("/exec", &json!({"command": "true", "cwd": "l1"}))
        .assert_error(403, "path_forbidden");
    assert_eq!(std::fs::read_dir(&w.outside).unwrap().count(), 1);
    assert_eq!(std::fs::read(w.outside.join("secret")).unwrap(), b"secret");

    // A cycle is refused, not followed forever.
    symlink("loop", w.ws.join("loop")).unwrap();
    w.get("/files/read?path=loop")
        .assert_error(400, "invalid_request");
}

#[test]
fn symlinks_inside_the_workspace_are_followed() {
    let w = TestWorker::start();
    std::fs::create_dir(w.ws.join("real")).unwrap();
    symlink("real", w.ws.join("link")).unwrap();
    symlink(w.ws.join("real"), w.ws.join("abs_link")).unwrap();
    symlink("sub/../real/../real", w.ws.join("twisty")).unwrap();
    let resp = w.put("/files/write?path=link/f.txt", b"via link");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["path"], "real/f.txt");
    assert_eq!(std::fs::read(w.ws.join("real/f.txt")).unwrap(), b"via link");
    assert_eq!(w.get("/files/read?path=abs_link/f.txt").body, b"via link");
    assert_eq!(w.get("/files/read?path=twisty/f.txt").body, b"via link");
    assert_eq!(
        w.get("/files/list?path=link").json()["entries"][0]["name"],
        "f.txt"
    );
    let recs = w.exec(&json!({"command": "cat f.txt", "cwd": "link"}));
    assert_eq!(text_of(&recs, "stdout"), "via link");
    // Writing through a file link replaces the target, keeps the link.
    symlink("real/f.txt", w.ws.join("flink")).unwrap();
    assert_eq!(w.put("/files/write?path=flink", b"new").status, 200);
    assert_eq!(std::fs::read(w.ws.join("real/f.txt")).unwrap(), b"new");
    assert!(std::fs::symlink_metadata(w.ws.join("flink"))
        .unwrap()
        .file_type()
        .is_symlink());
}
