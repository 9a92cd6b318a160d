//! Typed configuration: built-in defaults, then the TOML file, then `OTPD__SECTION__KEY`
//! environment overrides. Everything is checked once at load; the rest of the program can
//! trust these values.

mod duration;
pub mod email;
pub mod radius;
mod services;
pub mod socket;
pub mod store;
pub mod tokens;

pub use email::{EmailConfig, EmailTls};
pub use radius::{RadiusClientConfig, RadiusConfig, CALLING_STATION_ID};
pub use socket::SocketConfig;
pub use store::{StoreConfig, StoreKind};
pub use tokens::{MotpConfig, YubicoConfig};

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
    pub store: StoreConfig,
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
            store: StoreConfig::default(),
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

use services::{default_levels, default_services, services_over_builtin, valid_name};
pub use services::{Requirement, ServiceConfig, ANY_CLASS, BUILTIN_CLASSES};

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
        self.store.validate()?;
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
mod tests;
