//! `[email]`: the SMTP relay that carries e-mailed one-time codes, and how those codes look.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailTls {
    /// Plain connection upgraded with STARTTLS; refused if the relay does not offer it.
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
    /// No encryption: only for a relay on the same host or a trusted link.
    None,
}

impl EmailTls {
    pub fn as_str(self) -> &'static str {
        match self {
            EmailTls::Starttls => "starttls",
            EmailTls::Tls => "tls",
            EmailTls::None => "none",
        }
    }

    /// The port each mode is normally served on.
    pub fn default_port(self) -> u16 {
        match self {
            EmailTls::Starttls => 587,
            EmailTls::Tls => 465,
            EmailTls::None => 25,
        }
    }
}

/// Placeholders the subject and the body may hold.
pub const PLACEHOLDERS: [&str; 3] = ["code", "user", "validity"];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// The relay's host name or address; empty switches e-mailed codes off.
    pub host: String,
    /// Unset: 587 for starttls, 465 for tls, 25 for none.
    pub port: Option<u16>,
    pub tls: EmailTls,
    /// Extra CA certificate(s) in PEM that sign the relay's certificate (an internal CA); the
    /// public web roots are always trusted.
    pub ca_file: Option<PathBuf>,
    /// SMTP AUTH user; empty sends without AUTH.
    pub username: String,
    #[serde(skip_serializing)]
    pub password: String,
    /// The sender, `otpd@example.org` or `Example Login <otpd@example.org>`.
    pub from: String,
    /// Subject and body templates: `{code}`, `{user}`, `{validity}`; `{{` and `}}` are
    /// literal braces.
    pub subject: String,
    pub body: String,
    /// Length of a code (6 to 10 digits). Read when a token is enrolled.
    pub digits: u32,
    /// How long a sent code stays valid.
    #[serde(with = "super::duration")]
    pub validity: Duration,
    /// How long one send may take, all of it (connect, TLS, the SMTP dialogue).
    #[serde(with = "super::duration")]
    pub timeout: Duration,
    /// Codes sent to one account within an hour, at most (every attempt counts).
    pub max_per_hour: u32,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            host: String::new(),
            port: None,
            tls: EmailTls::Starttls,
            ca_file: None,
            username: String::new(),
            password: String::new(),
            from: String::new(),
            subject: "Your login code".into(),
            body: "Your login code for {user} is {code}\n\nIt is valid for {validity} and \
                   works once. If you did not try to log in, someone knows your PIN: change \
                   it.\n"
                .into(),
            digits: 8,
            validity: Duration::from_secs(3600),
            timeout: Duration::from_secs(2),
            max_per_hour: 5,
        }
    }
}

/// A template split into literal text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    Brace(char),
    Field(&'a str),
}

/// Splits a template into pieces; an unknown placeholder or a lone brace is an error that
/// names it.
pub fn parse_template(t: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(i) = rest.find(['{', '}']) {
        if i > 0 {
            out.push(Piece::Text(&rest[..i]));
        }
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push(Piece::Brace('{'));
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push(Piece::Brace('}'));
            rest = after;
        } else if tail.starts_with('}') {
            return Err("a lone `}` (write `}}` for a literal brace)".into());
        } else {
            let Some(end) = tail.find('}') else {
                return Err("a `{` without its `}` (write `{{` for a literal brace)".into());
            };
            let name = &tail[1..end];
            if !PLACEHOLDERS.contains(&name) {
                return Err(format!(
                    "unknown placeholder `{{{}}}`; known: {{code}}, {{user}}, {{validity}}",
                    name.chars().take(32).collect::<String>()
                ));
            }
            out.push(Piece::Field(name));
            rest = &tail[end + 1..];
        }
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

impl EmailConfig {
    pub fn is_configured(&self) -> bool {
        !self.host.is_empty()
    }

    pub fn port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.tls.default_port())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(6..=10).contains(&self.digits) {
            return Err(invalid("email.digits", "allowed: 6 to 10"));
        }
        if self.validity < Duration::from_secs(1) || self.validity > Duration::from_secs(24 * 3600)
        {
            return Err(invalid("email.validity", "allowed: 1s to 24h"));
        }
        if self.timeout < Duration::from_millis(100) || self.timeout > Duration::from_secs(60) {
            return Err(invalid(
                "email.timeout",
                "allowed: 100ms to 60s (a login waits this long at most)",
            ));
        }
        if !(1..=100).contains(&self.max_per_hour) {
            return Err(invalid("email.max_per_hour", "allowed: 1 to 100"));
        }
        if self.port == Some(0) {
            return Err(invalid("email.port", "allowed: 1 to 65535"));
        }
        if self.subject.len() > 200 || self.subject.chars().any(char::is_control) {
            return Err(invalid(
                "email.subject",
                "at most 200 bytes on one line (no control characters)",
            ));
        }
        parse_template(&self.subject).map_err(|e| invalid("email.subject", e))?;
        if self.body.len() > 16 * 1024
            || self
                .body
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(invalid(
                "email.body",
                "at most 16 KiB of text (line breaks and tabs allowed, no other control characters)",
            ));
        }
        let body = parse_template(&self.body).map_err(|e| invalid("email.body", e))?;
        let subject = parse_template(&self.subject).map_err(|e| invalid("email.subject", e))?;
        if !body
            .iter()
            .chain(subject.iter())
            .any(|p| *p == Piece::Field("code"))
        {
            return Err(invalid(
                "email.body",
                "must hold the placeholder {code} (in the body or the subject)",
            ));
        }
        if self.username.is_empty() != self.password.is_empty() {
            return Err(invalid(
                "email.username / email.password",
                "set both (SMTP AUTH) or neither",
            ));
        }
        if !self.is_configured() {
            return Ok(());
        }
        if self.host.len() > 253
            || self
                .host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "/?#@".contains(c))
        {
            return Err(invalid("email.host", "a host name or an IP address"));
        }
        if !self.username.is_empty() && self.tls == EmailTls::None {
            return Err(invalid(
                "email.tls",
                "\"none\" with username/password would send the password in clear; use \
                 \"starttls\" or \"tls\"",
            ));
        }
        if self.from.is_empty() {
            return Err(invalid(
                "email.from",
                "the sender address is needed once email.host is set",
            ));
        }
        self.from.parse::<lettre::message::Mailbox>().map_err(|e| {
            invalid(
                "email.from",
                format!("`{}` is not an address ({e})", self.from),
            )
        })?;
        if let Some(p) = &self.ca_file {
            let pem = std::fs::read(p)
                .map_err(|e| invalid("email.ca_file", format!("{}: {e}", p.display())))?;
            lettre::transport::smtp::client::Certificate::from_pem(&pem).map_err(|e| {
                invalid(
                    "email.ca_file",
                    format!("{}: not a PEM certificate ({e})", p.display()),
                )
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert_eq!(
            parse_template("a {code} {{x}}").expect("ok"),
            vec![
                Piece::Text("a "),
                Piece::Field("code"),
                Piece::Text(" "),
                Piece::Brace('{'),
                Piece::Text("x"),
                Piece::Brace('}'),
            ]
        );
        assert!(parse_template("{cod}").expect_err("typo").contains("{cod}"));
        assert!(parse_template("a { b").is_err());
        assert!(parse_template("a } b").is_err());
    }

    #[test]
    fn defaults_are_valid_and_off() {
        let c = EmailConfig::default();
        c.validate().expect("defaults");
        assert!(!c.is_configured());
        assert_eq!(c.port(), 587);
    }

    #[test]
    fn bad_values_are_named() {
        let on = EmailConfig {
            host: "relay.example.org".into(),
            from: "otpd@example.org".into(),
            ..EmailConfig::default()
        };
        on.validate().expect("configured");
        let e = |c: EmailConfig| c.validate().expect_err("bad").to_string();
        assert!(e(EmailConfig {
            from: String::new(),
            ..on.clone()
        })
        .contains("email.from"));
        assert!(e(EmailConfig {
            from: "not an address".into(),
            ..on.clone()
        })
        .contains("email.from"));
        assert!(e(EmailConfig {
            body: "no code here".into(),
            ..on.clone()
        })
        .contains("{code}"));
        assert!(e(EmailConfig {
            username: "u".into(),
            password: "p".into(),
            tls: EmailTls::None,
            ..on.clone()
        })
        .contains("in clear"));
        assert!(e(EmailConfig {
            username: "u".into(),
            ..on.clone()
        })
        .contains("both"));
        assert!(e(EmailConfig {
            digits: 4,
            ..on.clone()
        })
        .contains("email.digits"));
        assert!(e(EmailConfig {
            subject: "a\r\nBcc: x".into(),
            ..on
        })
        .contains("email.subject"));
    }
}
