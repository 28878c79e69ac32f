//! Drift test: the committed OpenAPI document and the route table must agree, and the
//! document must hang together (every `$ref` resolves, every operation documents its
//! responses).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    serde_json::from_str(paddock_server::OPENAPI).expect("openapi.json is valid JSON")
}

/// Every operation of the document: `(METHOD, path)` → the operation object.
fn operations(doc: &Value) -> BTreeMap<(String, String), &Value> {
    let paths = doc["paths"].as_object().expect("`paths` is an object");
    let mut ops = BTreeMap::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for (method, op) in item {
            if METHODS.contains(&method.as_str()) {
                ops.insert((method.to_uppercase(), path.clone()), op);
            }
        }
    }
    ops
}

#[test]
fn routes_and_document_agree() {
    let doc = document();
    let routed: BTreeSet<(String, String)> = paddock_server::route_table()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let documented: BTreeSet<(String, String)> = operations(&doc).into_keys().collect();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "the route table and openapi.json disagree\n  routed but not documented: {undocumented:?}\n  documented but not routed: {unrouted:?}"
    );
}

/// Follows a JSON pointer (`/components/schemas/Agent`), unescaping `~1` and `~0`.
fn resolve<'a>(doc: &'a Value, pointer: &str) -> Option<&'a Value> {
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .try_fold(doc, |node, token| match node {
            Value::Object(m) => m.get(&token),
            Value::Array(a) => token.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        })
}

/// Collects `(where, target)` for every `$ref` and discriminator mapping under `node`.
fn collect_refs(node: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match node {
        Value::Object(m) => {
            for (k, v) in m {
                let here = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push((here, r.clone())),
                    ("discriminator", Value::Object(d)) => {
                        if let Some(Value::Object(mapping)) = d.get("mapping") {
                            for (name, target) in mapping {
                                if let Value::String(t) = target {
                                    out.push((format!("{here}/mapping/{name}"), t.clone()));
                                }
                            }
                        }
                    }
                    _ => collect_refs(v, &here, out),
                }
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                collect_refs(v, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_ref_resolves() {
    let doc = document();
    let mut refs = vec![];
    collect_refs(&doc, "#", &mut refs);
    assert!(!refs.is_empty(), "the document uses no $ref at all");
    let broken: Vec<String> = refs
        .iter()
        .filter(|(_, target)| {
            !(target.starts_with("#/components/") && resolve(&doc, &target["#".len()..]).is_some())
        })
        .map(|(at, target)| format!("{at} -> {target}"))
        .collect();
    assert!(
        broken.is_empty(),
        "unresolved or non-local references:\n  {}",
        broken.join("\n  ")
    );
}

#[test]
fn every_operation_documents_its_responses() {
    let doc = document();
    let mut ids: BTreeMap<&str, (String, String)> = BTreeMap::new();
    let mut problems = vec![];
    for ((method, path), op) in operations(&doc) {
        let name = format!("{method} {path}");
        match op["operationId"].as_str() {
            None | Some("") => problems.push(format!("{name}: no operationId")),
            Some(id) => {
                if let Some(first) = ids.insert(id, (method.clone(), path.clone())) {
                    problems.push(format!(
                        "{name}: operationId {id:?} is also used by {} {}",
                        first.0, first.1
                    ));
                }
            }
        }
        let responses = &op["responses"];
        if responses.get("200").is_none() {
            problems.push(format!("{name}: no 200 response"));
        }
        if method == "POST" && path.starts_with("/v1/") && responses.get("400").is_none() {
            problems.push(format!("{name}: no 400 response"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
