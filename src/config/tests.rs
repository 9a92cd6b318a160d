use super::*;

fn load_str(toml: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("otpd.toml");
    std::fs::write(&p, toml).expect("write");
    Config::load(Some(&p))
}

#[test]
fn defaults_are_valid_and_complete() {
    let c = Config::default().finish().expect("defaults");
    assert_eq!(c.requirement("web-otp", "web"), Some(Requirement::Otp));
    assert_eq!(
        c.requirement("web-otp", "mail"),
        Some(Requirement::Password)
    );
    assert_eq!(c.requirement("web-only", "ssh"), Some(Requirement::Deny));
    assert_eq!(
        c.requirement("app-passwords", "mail"),
        Some(Requirement::AppPassword)
    );
    assert_eq!(c.requirement("nope", "mail"), None);
}

#[test]
fn unknown_key_is_named() {
    let e = load_str("data_dir = \"/tmp/x\"\nfoo = 1\n").expect_err("unknown key");
    assert!(e.to_string().contains("foo"), "{e}");
    let e = load_str("[pin]\nmin_lenght = 3\n").expect_err("unknown key");
    assert!(e.to_string().contains("min_lenght"), "{e}");
}

#[test]
fn bad_values_are_named() {
    let e = load_str("unknown_user = \"maybe\"\n").expect_err("bad enum");
    assert!(e.to_string().contains("maybe"), "{e}");
    let e = load_str("[hotp]\nwindow = 0\n").expect_err("range");
    assert!(e.to_string().contains("hotp.window"), "{e}");
    let e = load_str("[levels.web-otp]\ndav = \"otp\"\n").expect_err("class");
    assert!(e.to_string().contains("levels.web-otp.dav"), "{e}");
    let e = load_str("[lockout]\ndelay = \"soon\"\n").expect_err("duration");
    assert!(e.to_string().contains("soon"), "{e}");
    let e = load_str("[radius]\nreceive_threads = 65\n").expect_err("range");
    assert!(e.to_string().contains("radius.receive_threads"), "{e}");
    for bad in ["1", "65535", "268435457"] {
        let e = load_str(&format!("[radius]\nreceive_buffer = {bad}\n")).expect_err("range");
        assert!(
            e.to_string().contains("radius.receive_buffer"),
            "{bad}: {e}"
        );
    }
    for good in ["0", "65536", "268435456"] {
        load_str(&format!("[radius]\nreceive_buffer = {good}\n")).expect(good);
    }
}

#[test]
fn a_service_table_changes_only_the_keys_it_names() {
    let c = load_str("[services.web]\nrhosts = [\"192.0.2.10/32\"]\n").expect("load");
    let web = &c.services["web"];
    assert_eq!(web.rhosts.len(), 1);
    assert!(web.relogin_cache, "built-in value kept");
    assert!(web.pam_services.iter().any(|p| p == "roundcube"));
    let c = load_str("[services.dav]\npam_services = [\"dav\"]\n").expect("load");
    assert!(!c.services["dav"].relogin_cache);
    let e = load_str("[services.web]\nrelogin_cahce = true\n").expect_err("typo");
    assert!(e.to_string().contains("relogin_cahce"), "{e}");
    assert!(e.to_string().contains("services.web"), "{e}");
}

#[test]
fn level_override_merges_over_defaults() {
    let c = load_str("[services.dav]\n[levels.web-otp]\ndav = \"otp\"\n").expect("load");
    assert_eq!(c.requirement("web-otp", "dav"), Some(Requirement::Otp));
    assert_eq!(c.requirement("web-otp", "web"), Some(Requirement::Otp));
    assert_eq!(c.requirement("off", "dav"), Some(Requirement::Password));
}

#[test]
fn reference_config_is_valid_and_names_every_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/otpd.toml");
    Config::load(Some(&path)).expect("conf/otpd.toml must load");
    let text = std::fs::read_to_string(&path).expect("read conf/otpd.toml");
    let v = serde_json::to_value(Config::default()).expect("serialize defaults");
    let mut missing = Vec::new();
    fn walk(v: &serde_json::Value, text: &str, path: &str, missing: &mut Vec<String>) {
        if let serde_json::Value::Object(map) = v {
            for (k, child) in map {
                let full = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if !text.contains(&format!("{k} =")) {
                    missing.push(full.clone());
                }
                walk(child, text, &full, missing);
            }
        }
    }
    walk(&v, &text, "", &mut missing);
    // Sections are tables, not `key =` lines.
    for table in ["radius.clients", "http.clients"] {
        if text.contains(&format!("[[{table}]]")) {
            missing.retain(|k| k != table);
        }
    }
    missing.retain(|k| {
        ![
            "pin", "hotp", "totp", "lockout", "log", "audit", "services", "levels", "radius",
            "socket", "metrics", "yubico", "motp", "email", "http", "store",
        ]
        .contains(&k.as_str())
    });
    assert!(
        missing.is_empty(),
        "conf/otpd.toml does not document: {missing:?}"
    );

    // And docs/configuration.md has a table row for every key of conf/otpd.toml, and no
    // row for a key the reference does not have.
    let docs_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    let docs = std::fs::read_to_string(&docs_path).expect("read docs/configuration.md");
    let in_conf = reference_keys(&text);
    let in_docs = documented_keys(&docs);
    let undocumented: Vec<_> = in_conf.difference(&in_docs).collect();
    let unknown: Vec<_> = in_docs.difference(&in_conf).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "keys of conf/otpd.toml without a row in a table of docs/configuration.md: \
         {undocumented:?}; rows of docs/configuration.md for keys conf/otpd.toml does not \
         have: {unknown:?}"
    );
}

/// The keys of the reference file as dotted names: `key = ...` lines, and `# key = ...`
/// for optional keys shown commented out. Per-name tables are written with a placeholder:
/// `services.NAME.KEY`, `levels.LEVEL.CLASS`; array tables by their name
/// (`radius.clients.KEY`).
fn reference_keys(text: &str) -> std::collections::BTreeSet<String> {
    let mut section = String::new();
    let mut keys = std::collections::BTreeSet::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            section = t.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        let body = if let Some(commented) = t.strip_prefix("# ") {
            commented
        } else if t.starts_with('#') {
            continue;
        } else {
            t
        };
        let Some((key, _)) = body.split_once(" = ") else {
            continue;
        };
        let key = key.trim_matches('"');
        let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
        if key.is_empty() || !(key == "*" || key.chars().all(|c| plain(c) || c == '-')) {
            continue;
        }
        let full = match section.split_once('.') {
            _ if section.is_empty() => key.to_string(),
            Some(("services", _)) => format!("services.NAME.{key}"),
            Some(("levels", _)) => "levels.LEVEL.CLASS".to_string(),
            _ => format!("{section}.{key}"),
        };
        keys.insert(full);
    }
    keys
}

/// Every key named in the first column of a `| key | ...` table.
fn documented_keys(docs: &str) -> std::collections::BTreeSet<String> {
    let mut keys = std::collections::BTreeSet::new();
    let mut in_key_table = false;
    for line in docs.lines() {
        if !line.starts_with('|') {
            in_key_table = false;
            continue;
        }
        let first = line.split('|').nth(1).unwrap_or("").trim();
        if first == "key" {
            in_key_table = true;
            continue;
        }
        if !in_key_table {
            continue;
        }
        for (i, part) in first.split('`').enumerate() {
            if i % 2 == 1 {
                keys.insert(part.to_string());
            }
        }
    }
    keys
}

#[test]
fn the_key_comparison_sees_both_directions() {
    let conf = "data_dir = \"x\"\n# port = 1\n# Prose with 10 x 30 s = 5 minutes\n\
                [services.web]\nrhosts = []\n[levels.off]\n\"*\" = \"password\"\n\
                [[radius.clients]]\nname = \"a\"\n";
    let want: std::collections::BTreeSet<String> = [
        "data_dir",
        "port",
        "services.NAME.rhosts",
        "levels.LEVEL.CLASS",
        "radius.clients.name",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(reference_keys(conf), want);
    let docs = "| level | web |\n|---|---|\n| `off` | x |\n\n| key | default | meaning |\n\
                |---|---|---|\n| `a.b`, `a.c` | `\"1\"` | m |\n";
    let got: Vec<String> = documented_keys(docs).into_iter().collect();
    assert_eq!(got, ["a.b", "a.c"]);
}
