//! Typed configuration: built-in defaults, then the TOML file, then `OTPD__SECTION__KEY`
//! environment overrides. Everything is checked once at load; the rest of the program can
//! trust these values.

mod duration;
pub mod email;
pub mod radius;
pub mod socket;
pub mod tokens;

pub use email::{EmailConfig, EmailTls};
pub use radius::{RadiusClientConfig, RadiusConfig, CALLING_STATION_ID};
pub use socket::SocketConfig;
pub use tokens::{MotpConfig, YubicoConfig};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    Missing(PathBuf),
    #[error("configuration: {0}")]
    Parse(String),
    #[error("configuration key `{key}`: {msg}")]
    Invalid { key: String, msg: String },
}

fn invalid(key: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        msg: msg.into(),
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the database and the key file live unless set separately.
    pub data_dir: PathBuf,
    pub database: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Issuer shown in authenticator apps (otpauth:// URI).
    pub issuer: String,
    /// What an unknown user gets: `defer` (the normal password stack decides) or `reject`.
    pub unknown_user: UnknownUser,
    pub pin: PinPolicy,
    pub hotp: HotpConfig,
    pub totp: TotpConfig,
    pub lockout: LockoutConfig,
    pub log: LogConfig,
    pub audit: AuditConfig,
    /// A table names only what it changes: `[services.web] rhosts = [...]` keeps the built-in
    /// class's PAM names and re-login cache.
    #[serde(deserialize_with = "services_over_builtin")]
    pub services: BTreeMap<String, ServiceConfig>,
    pub levels: BTreeMap<String, BTreeMap<String, Requirement>>,
    pub radius: RadiusConfig,
    pub socket: SocketConfig,
    pub yubico: YubicoConfig,
    pub motp: MotpConfig,
    pub metrics: MetricsConfig,
    pub email: EmailConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("otpd-data"),
            database: None,
            key_file: None,
            issuer: "otpd".into(),
            unknown_user: UnknownUser::Defer,
            pin: PinPolicy::default(),
            hotp: HotpConfig::default(),
            totp: TotpConfig::default(),
            lockout: LockoutConfig::default(),
            log: LogConfig::default(),
            audit: AuditConfig::default(),
            services: BTreeMap::new(),
            levels: BTreeMap::new(),
            radius: RadiusConfig::default(),
            socket: SocketConfig::default(),
            yubico: YubicoConfig::default(),
            motp: MotpConfig::default(),
            metrics: MetricsConfig::default(),
            email: EmailConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownUser {
    Defer,
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PinCharset {
    /// ASCII letters and digits.
    Alnum,
    /// ASCII digits only.
    Digits,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PinPolicy {
    pub min_length: usize,
    pub max_length: usize,
    pub charset: PinCharset,
}

impl Default for PinPolicy {
    fn default() -> Self {
        PinPolicy {
            min_length: 4,
            max_length: 8,
            charset: PinCharset::Alnum,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HotpConfig {
    /// How many counters ahead of the last used one a login may match.
    pub window: u32,
    /// How far `otpd token resync` searches.
    pub resync_window: u32,
}

impl Default for HotpConfig {
    fn default() -> Self {
        HotpConfig {
            window: 10,
            resync_window: 1000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TotpConfig {
    /// Steps accepted either side of the expected step.
    pub window: u32,
    /// Largest remembered device clock offset, in steps.
    pub max_drift: u32,
    /// Steps either side of now that `otpd token resync` searches.
    pub resync_window: u32,
}

impl Default for TotpConfig {
    fn default() -> Self {
        TotpConfig {
            window: 1,
            max_drift: 10,
            resync_window: 120,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockoutConfig {
    /// Failed logins in a row before the account slows down.
    pub free_failures: u32,
    /// First delay after `free_failures`; it doubles with each further failure.
    #[serde(with = "duration")]
    pub delay: Duration,
    #[serde(with = "duration")]
    pub max_delay: Duration,
    /// Failed logins in a row that lock the account (0 = never lock).
    pub max_failures: u32,
    /// How long a lock lasts before it clears by itself.
    #[serde(with = "duration")]
    pub lock_duration: Duration,
    /// Failures from one address against one account (within `source_window`) before that
    /// address is blocked for that account (0 = off). Used capped at `max_failures - 1`, so
    /// one address cannot lock the real user out.
    pub per_source_max_failures: u32,
    /// Failures from one address over all accounts before it is blocked for all (0 = off).
    pub source_max_failures: u32,
    #[serde(with = "duration")]
    pub source_window: Duration,
    /// How long a blocked address stays blocked.
    #[serde(with = "duration")]
    pub source_block: Duration,
}

impl LockoutConfig {
    /// The per-(address, account) limit in force: below the account lock, whatever is set.
    pub fn per_source_limit(&self) -> u32 {
        match (self.per_source_max_failures, self.max_failures) {
            (0, _) => 0,
            (n, 0) => n,
            (n, lock) => n.min(lock.saturating_sub(1)).max(1),
        }
    }
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            free_failures: 3,
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_failures: 10,
            lock_duration: Duration::from_secs(15 * 60),
            per_source_max_failures: 5,
            source_max_failures: 30,
            source_window: Duration::from_secs(15 * 60),
            source_block: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter: `error`, `warn`, `info`, `debug`, or directives like `otpd=debug`.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Audit records older than this many days are pruned by the daemon (0 keeps them all).
    pub keep_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { keep_days: 365 }
    }
}

/// `[metrics]`: the optional Prometheus endpoint.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the `GET /metrics` endpoint; unset (the default) switches it off.
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Per service class settings (`[services.NAME]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// PAM service names that count as this class.
    pub pam_services: Vec<String>,
    /// Source addresses whose logins count as this class whatever the PAM service says
    /// (the webmail host's IMAP logins count as `web`).
    pub rhosts: Vec<IpNet>,
    /// Two-step login: the PIN alone gets a Challenge asking for the code.
    pub challenge_on_pin_only: bool,
    /// Re-login cache after an OTP Accept (webmail logs in on every page view).
    pub relogin_cache: bool,
    #[serde(with = "duration")]
    pub relogin_idle: Duration,
    #[serde(with = "duration")]
    pub relogin_max: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            pam_services: Vec::new(),
            rhosts: Vec::new(),
            challenge_on_pin_only: false,
            relogin_cache: false,
            relogin_idle: Duration::from_secs(15 * 60),
            relogin_max: Duration::from_secs(8 * 3600),
        }
    }
}

/// What a login of one service class needs at one security level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Requirement {
    /// PIN followed by a code.
    Otp,
    /// Not ours: the normal password stack decides (Defer).
    Password,
    /// An app-specific password alone.
    AppPassword,
    /// The service is switched off for the account.
    Deny,
}

impl Requirement {
    pub fn as_str(self) -> &'static str {
        match self {
            Requirement::Otp => "otp",
            Requirement::Password => "password",
            Requirement::AppPassword => "app-password",
            Requirement::Deny => "deny",
        }
    }
}

pub const BUILTIN_CLASSES: [&str; 4] = ["web", "mail", "ssh", "vpn"];
/// The cell of a level that applies to classes it does not name.
pub const ANY_CLASS: &str = "*";

/// Reads `[services.NAME]` tables as changes to the built-in class of that name (or to an
/// empty class for a new name): each key given wins, every other key keeps its value.
fn services_over_builtin<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, ServiceConfig>, D::Error> {
    use serde::de::Error;
    let raw = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    let builtin = default_services();
    let mut out = BTreeMap::new();
    for (name, given) in raw {
        let base = builtin.get(&name).cloned().unwrap_or_default();
        let mut merged = serde_json::to_value(&base).map_err(D::Error::custom)?;
        match (given, &mut merged) {
            (serde_json::Value::Object(keys), serde_json::Value::Object(m)) => m.extend(keys),
            _ => {
                return Err(D::Error::custom(format!(
                    "services.{name}: must be a table of settings"
                )))
            }
        }
        let svc = ServiceConfig::deserialize(merged)
            .map_err(|e| D::Error::custom(format!("services.{name}: {e}")))?;
        out.insert(name, svc);
    }
    Ok(out)
}

fn default_services() -> BTreeMap<String, ServiceConfig> {
    let mk = |pam: &[&str], relogin: bool| ServiceConfig {
        pam_services: pam.iter().map(|s| s.to_string()).collect(),
        relogin_cache: relogin,
        ..ServiceConfig::default()
    };
    let mut m = BTreeMap::new();
    m.insert("web".into(), mk(&["roundcube", "webmail", "sogo"], true));
    m.insert(
        "mail".into(),
        mk(
            &[
                "dovecot",
                "imap",
                "pop3",
                "smtp",
                "submission",
                "sieve",
                "managesieve",
                "lmtp",
            ],
            false,
        ),
    );
    m.insert("ssh".into(), mk(&["sshd"], false));
    m.insert("vpn".into(), mk(&["openvpn", "strongswan", "ppp"], false));
    m
}

fn default_levels() -> BTreeMap<String, BTreeMap<String, Requirement>> {
    use Requirement::*;
    let rows: [(&str, [Requirement; 5]); 5] = [
        // web, mail, ssh, vpn, any other class
        ("off", [Password, Password, Password, Password, Password]),
        ("web-otp", [Otp, Password, Password, Password, Password]),
        ("web-only", [Otp, Deny, Deny, Deny, Deny]),
        ("app-passwords", [Otp, AppPassword, Otp, Otp, AppPassword]),
        ("everywhere", [Otp, Otp, Otp, Otp, Otp]),
    ];
    let cols = ["web", "mail", "ssh", "vpn", ANY_CLASS];
    rows.iter()
        .map(|(level, cells)| {
            let row = cols
                .iter()
                .zip(cells.iter())
                .map(|(c, r)| (c.to_string(), *r))
                .collect();
            (level.to_string(), row)
        })
        .collect()
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Config {
    /// Reads the file (if any) and the environment, then checks every value.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut b = config::Config::builder();
        if let Some(p) = path {
            if !p.exists() {
                return Err(ConfigError::Missing(p.to_path_buf()));
            }
            b = b.add_source(config::File::from(p).format(config::FileFormat::Toml));
        }
        b = b.add_source(
            config::Environment::with_prefix("OTPD")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("radius.listen")
                .with_list_parse_key("socket.allow_uids")
                .with_list_parse_key("socket.allow_gids")
                .with_list_parse_key("yubico.api_urls"),
        );
        let raw = b.build().map_err(|e| ConfigError::Parse(e.to_string()))?;
        let cfg: Config = raw
            .try_deserialize()
            .map_err(|e| ConfigError::Parse(explain(e.to_string())))?;
        cfg.finish()
    }

    /// Parses a configuration from TOML text alone (no file, no environment): for tests and
    /// the fuzzer.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let raw = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        let cfg: Config = raw
            .try_deserialize()
            .map_err(|e| ConfigError::Parse(explain(e.to_string())))?;
        cfg.finish()
    }

    /// Merges the built-in service classes and level table under what the file set, then
    /// validates cross-references.
    pub fn finish(mut self) -> Result<Config, ConfigError> {
        for (name, svc) in default_services() {
            self.services.entry(name).or_insert(svc);
        }
        let mut levels = default_levels();
        for (level, cells) in std::mem::take(&mut self.levels) {
            let row = levels.entry(level).or_default();
            row.extend(cells);
        }
        self.levels = levels;
        self.validate()?;
        Ok(self)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.issuer.is_empty() || self.issuer.contains(':') {
            return Err(invalid(
                "issuer",
                "must be non-empty and must not contain ':'",
            ));
        }
        let p = &self.pin;
        if p.min_length == 0 || p.min_length > p.max_length || p.max_length > 64 {
            return Err(invalid(
                "pin.min_length / pin.max_length",
                "need 1 <= min_length <= max_length <= 64",
            ));
        }
        if !(1..=100).contains(&self.hotp.window) {
            return Err(invalid("hotp.window", "allowed: 1 to 100"));
        }
        if !(1..=100_000).contains(&self.hotp.resync_window) {
            return Err(invalid("hotp.resync_window", "allowed: 1 to 100000"));
        }
        if self.totp.window > 10 {
            return Err(invalid("totp.window", "allowed: 0 to 10 steps"));
        }
        if self.totp.max_drift > 2880 {
            return Err(invalid("totp.max_drift", "allowed: 0 to 2880 steps"));
        }
        if !(1..=10_000).contains(&self.totp.resync_window) {
            return Err(invalid("totp.resync_window", "allowed: 1 to 10000 steps"));
        }
        if self.lockout.delay > self.lockout.max_delay {
            return Err(invalid(
                "lockout.delay",
                "must not exceed lockout.max_delay",
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| {
            invalid(
                "log.level",
                format!("{e}; allowed: error, warn, info, debug, trace or tracing directives"),
            )
        })?;
        let mut pam_seen: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, svc) in &self.services {
            if !valid_name(name) {
                return Err(invalid(
                    format!("services.{name}"),
                    "class names are 1-32 characters of a-z, 0-9, '-' and '_'",
                ));
            }
            for pam in &svc.pam_services {
                if let Some(other) = pam_seen.insert(pam, name) {
                    return Err(invalid(
                        format!("services.{name}.pam_services"),
                        format!("PAM service `{pam}` is already mapped to class `{other}`"),
                    ));
                }
            }
            if svc.relogin_idle > svc.relogin_max {
                return Err(invalid(
                    format!("services.{name}.relogin_idle"),
                    "must not exceed relogin_max",
                ));
            }
        }
        for (level, cells) in &self.levels {
            if !valid_name(level) {
                return Err(invalid(
                    format!("levels.{level}"),
                    "level names are 1-32 characters of a-z, 0-9, '-' and '_'",
                ));
            }
            for class in cells.keys() {
                if class != ANY_CLASS && !self.services.contains_key(class) {
                    return Err(invalid(
                        format!("levels.{level}.{class}"),
                        format!(
                            "no service class `{class}`; known: {}",
                            self.class_names().join(", ")
                        ),
                    ));
                }
            }
        }
        self.radius.validate(self)?;
        self.socket.validate()?;
        self.yubico.validate()?;
        self.motp.validate()?;
        self.email.validate()?;
        Ok(())
    }

    pub fn database_path(&self) -> PathBuf {
        self.database
            .clone()
            .unwrap_or_else(|| self.data_dir.join("otpd.db"))
    }

    pub fn key_path(&self) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("otpd.key"))
    }

    pub fn class_names(&self) -> Vec<String> {
        self.services.keys().cloned().collect()
    }

    pub fn level_names(&self) -> Vec<String> {
        self.levels.keys().cloned().collect()
    }

    /// The requirement of (level, class); a level without an entry for the class uses its
    /// `*` cell, and a level without that either asks for OTP (fail towards the safe side).
    pub fn requirement(&self, level: &str, class: &str) -> Option<Requirement> {
        let row = self.levels.get(level)?;
        Some(
            row.get(class)
                .or_else(|| row.get(ANY_CLASS))
                .copied()
                .unwrap_or(Requirement::Otp),
        )
    }
}

/// Makes serde's wording friendlier where it helps an admin find the fix.
fn explain(msg: String) -> String {
    if msg.contains("unknown field") {
        format!("{msg} (check the spelling; conf/otpd.toml lists every key)")
    } else {
        msg
    }
}

#[cfg(test)]
mod tests {
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
        if text.contains("[[radius.clients]]") {
            missing.retain(|k| k != "radius.clients");
        }
        missing.retain(|k| {
            ![
                "pin", "hotp", "totp", "lockout", "log", "audit", "services", "levels", "radius",
                "socket", "metrics", "yubico", "motp", "email",
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
}
