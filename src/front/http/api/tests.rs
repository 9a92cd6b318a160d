//! The OpenAPI document against the router's table: every route is documented with its
//! method, nothing is documented that the router does not serve, and every reference in the
//! document resolves.

use super::{routes, OPENAPI};
use std::collections::BTreeSet;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn documented() -> BTreeSet<(String, String)> {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "OpenAPI 3"
    );
    let paths = doc["paths"].as_object().expect("paths");
    let mut out = BTreeSet::new();
    for (path, item) in paths {
        for (k, _) in item.as_object().expect("path item") {
            if METHODS.contains(&k.as_str()) {
                out.insert((k.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn every_route_is_documented_and_every_documented_route_is_served() {
    let served: BTreeSet<(String, String)> = routes()
        .iter()
        .map(|(m, p, _)| (m.as_str().to_string(), p.to_string()))
        .collect();
    let docs = documented();
    let missing: Vec<_> = served.difference(&docs).collect();
    let extra: Vec<_> = docs.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "routes without a description: {missing:?}"
    );
    assert!(extra.is_empty(), "described but not served: {extra:?}");
    assert_eq!(served.len(), routes().len(), "a route listed twice");
}

#[test]
fn every_reference_resolves_and_path_parameters_are_declared() {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("json");
    let text = OPENAPI;
    for piece in text.split("\"$ref\": \"#/").skip(1) {
        let target = piece.split('"').next().expect("ref");
        let mut v = &doc;
        for part in target.split('/') {
            v = &v[part];
        }
        assert!(!v.is_null(), "dangling $ref #/{target}");
    }
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let declared: BTreeSet<String> = item["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().expect("name").to_string())
                    .collect()
            })
            .unwrap_or_default();
        let used: BTreeSet<String> = path
            .split('{')
            .skip(1)
            .map(|s| s.split('}').next().expect("}").to_string())
            .collect();
        assert_eq!(declared, used, "{path}");
    }
}
