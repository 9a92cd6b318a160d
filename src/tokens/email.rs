//! E-mailed codes: a token holds an address; on request otpd makes a fresh random code, sends
//! it through the SMTP relay of `[email]` and keeps only its keyed hash and expiry. The code
//! then works once, typed after the PIN like any token's code.
//!
//! The send is blocking (lettre's SMTP transport) and runs on a thread of its own, so one
//! send never holds a login longer than `[email] timeout`, whatever the relay does; the
//! number of such threads is bounded.

use crate::config::{email::parse_template, email::Piece, EmailConfig, EmailTls};
use crate::crypto::{self, Keys};
use crate::model::Token;
use crate::store::LoginStore;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;
use zeroize::Zeroizing;

pub use super::ports::{Mailer, Outgoing, SendError};

/// RFC 5321's limit on a forward path; longer addresses cannot be delivered anyway.
pub const MAX_ADDRESS_LEN: usize = 254;
const MAX_LOCAL_LEN: usize = 64;
/// Sends in progress at once, over the whole process. A relay that holds every connection
/// open cannot make otpd start threads without end.
const MAX_IN_FLIGHT: usize = 16;
/// The hourly rate limit's window.
pub const RATE_WINDOW_SECS: i64 = 3600;

/// Checks an address as an admin typed it: one `@`, a local part and a domain, no spaces,
/// control characters or characters that mean something in a mail header; bounded.
/// Returns it trimmed.
pub fn check_address(raw: &str) -> Result<String, String> {
    let a = raw.trim();
    if a.is_empty() {
        return Err("the address is empty".into());
    }
    if a.len() > MAX_ADDRESS_LEN {
        return Err(format!(
            "the address is {} bytes; at most {MAX_ADDRESS_LEN}",
            a.len()
        ));
    }
    if let Some(c) = a
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "<>,;:\"()[]\\".contains(*c))
    {
        return Err(format!(
            "the address holds {}; write it bare, like alice@example.org",
            if c.is_whitespace() {
                "white space".to_string()
            } else if c.is_control() {
                "a control character".to_string()
            } else {
                format!("`{c}`")
            }
        ));
    }
    let mut parts = a.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err("an address has exactly one `@`, like alice@example.org".into());
    };
    if local.is_empty() || local.len() > MAX_LOCAL_LEN {
        return Err(format!(
            "the part before `@` must have 1 to {MAX_LOCAL_LEN} characters"
        ));
    }
    if domain.is_empty()
        || domain.starts_with(['.', '-'])
        || domain.ends_with(['.', '-'])
        || domain.contains("..")
    {
        return Err(format!("`{domain}` is not a mail domain"));
    }
    a.parse::<lettre::Address>()
        .map_err(|e| format!("not a deliverable address ({e})"))?;
    Ok(a.to_string())
}

/// What a user may be shown of an address: `a***@example.org`.
pub fn mask(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// A uniformly random code of `digits` digits (rejection sampling: no modulo bias).
pub fn random_code(digits: u32) -> Result<Zeroizing<String>, crypto::CryptoError> {
    let modulus = 10u64.pow(digits.clamp(1, 18));
    let limit = u64::MAX - u64::MAX % modulus;
    loop {
        let mut b = Zeroizing::new([0u8; 8]);
        crypto::fill_random(b.as_mut())?;
        let n = u64::from_le_bytes(*b);
        if n < limit {
            return Ok(Zeroizing::new(format!(
                "{:0width$}",
                n % modulus,
                width = digits as usize
            )));
        }
    }
}

/// Fills a template that `[email]` validation accepted.
fn render(template: &str, code: &str, user: &str, validity: Duration) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(template.len() + 32));
    // Validated at load; a template that no longer parses sends its text as it is.
    let pieces = parse_template(template).unwrap_or_else(|_| vec![Piece::Text(template)]);
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Brace(c) => out.push(c),
            Piece::Field("code") => out.push_str(code),
            Piece::Field("user") => out.push_str(user),
            Piece::Field(_) => out.push_str(&humantime::format_duration(validity).to_string()),
        }
    }
    out
}

/// SMTP through the relay of `[email]`, with lettre (rustls on ring).
pub struct Smtp;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// One of the bounded send slots, given back when the sending thread ends.
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        IN_FLIGHT
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_IN_FLIGHT).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

fn relay(cfg: &EmailConfig) -> String {
    format!("{}:{}", cfg.host, cfg.port())
}

fn message(cfg: &EmailConfig, mail: &Outgoing) -> Result<lettre::Message, SendError> {
    use lettre::message::{header::ContentType, Mailbox};
    let from: Mailbox = cfg
        .from
        .parse()
        .map_err(|e| SendError::Other(format!("email.from: {e}")))?;
    let to: lettre::Address = mail
        .to
        .parse()
        .map_err(|e| SendError::Other(format!("the token's address: {e}")))?;
    lettre::Message::builder()
        .from(from)
        .to(Mailbox::new(None, to))
        .subject(mail.subject.as_str())
        .header(ContentType::TEXT_PLAIN)
        .body(mail.body.to_string())
        .map_err(|e| SendError::Other(format!("message not built: {e}")))
}

fn transport(cfg: &EmailConfig) -> Result<lettre::SmtpTransport, SendError> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    let tls_params = || -> Result<TlsParameters, SendError> {
        let tls_err = |msg: String| SendError::Tls {
            relay: relay(cfg),
            msg,
        };
        let mut b = TlsParameters::builder(cfg.host.clone());
        if let Some(p) = &cfg.ca_file {
            let pem = std::fs::read(p).map_err(|e| tls_err(format!("{}: {e}", p.display())))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| tls_err(format!("{}: {e}", p.display())))?;
            b = b.add_root_certificate(cert);
        }
        b.build_rustls().map_err(|e| tls_err(e.to_string()))
    };
    let tls = match cfg.tls {
        EmailTls::None => Tls::None,
        EmailTls::Starttls => Tls::Required(tls_params()?),
        EmailTls::Tls => Tls::Wrapper(tls_params()?),
    };
    let mut b = lettre::SmtpTransport::builder_dangerous(cfg.host.as_str())
        .port(cfg.port())
        .tls(tls)
        .timeout(Some(cfg.timeout));
    if !cfg.username.is_empty() {
        b = b.credentials(Credentials::new(cfg.username.clone(), cfg.password.clone()));
    }
    Ok(b.build())
}

/// Turns lettre's error into what an admin can act on.
fn classify(cfg: &EmailConfig, e: &lettre::transport::smtp::Error) -> SendError {
    use std::error::Error as _;
    if e.is_timeout() {
        return SendError::Timeout {
            relay: relay(cfg),
            timeout: cfg.timeout,
        };
    }
    if e.status().is_some() {
        return SendError::Refused {
            relay: relay(cfg),
            msg: e.to_string(),
        };
    }
    if e.is_tls() {
        return SendError::Tls {
            relay: relay(cfg),
            msg: e.to_string(),
        };
    }
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => SendError::ConnectionRefused(relay(cfg)),
                // rustls reports a failed handshake (an untrusted certificate, a name that
                // does not match) through the socket as InvalidData; TCP never does.
                std::io::ErrorKind::InvalidData => SendError::Tls {
                    relay: relay(cfg),
                    msg: io.to_string(),
                },
                _ => SendError::Connect {
                    relay: relay(cfg),
                    msg: io.to_string(),
                },
            };
        }
        source = s.source();
    }
    SendError::Other(format!("{} ({e})", relay(cfg)))
}

impl Mailer for Smtp {
    fn send(&self, cfg: &EmailConfig, mail: &Outgoing) -> Result<(), SendError> {
        if !cfg.is_configured() {
            return Err(SendError::NotConfigured);
        }
        let msg = message(cfg, mail)?;
        let transport = transport(cfg)?;
        let slot = Slot::take().ok_or(SendError::Busy(MAX_IN_FLIGHT))?;
        let (tx, rx) = mpsc::sync_channel(1);
        // lettre's timeout bounds each step of the dialogue, not the whole: a relay that
        // answers every step just in time could hold a login for minutes. The thread may
        // outlive the wait; its own socket timeouts end it, and its slot comes back then.
        std::thread::Builder::new()
            .name("otpd-smtp".into())
            .spawn(move || {
                let _slot = slot;
                let _ = tx.send(lettre::Transport::send(&transport, &msg));
            })
            .map_err(|e| SendError::Other(format!("no thread for the send: {e}")))?;
        let answer = crate::blocking::section(|| rx.recv_timeout(cfg.timeout));
        match answer {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(classify(cfg, &e)),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(SendError::Timeout {
                relay: relay(cfg),
                timeout: cfg.timeout,
            }),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(SendError::Other(
                "the sending thread ended without an answer".into(),
            )),
        }
    }
}

/// Why no code was sent (for the audit and the admin).
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("e-mail code not sent: {0}")]
    Send(#[from] SendError),
    #[error(
        "e-mail code not sent: rate limit, {0} codes within the hour already (email.max_per_hour)"
    )]
    RateLimited(u32),
    #[error("e-mail code not sent: {0}")]
    Token(String),
    #[error("e-mail code not sent: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("e-mail code not sent: {0}")]
    Crypto(#[from] crypto::CryptoError),
}

/// A fresh code for an e-mail token: counted against the account's hourly limit, sent, then
/// its keyed hash stored in place of the code before. Sent before stored, so a relay that is
/// down leaves the code sent earlier working. Returns the masked address it went to.
pub fn issue(
    cfg: &EmailConfig,
    store: &dyn LoginStore,
    keys: &Keys,
    mailer: &dyn Mailer,
    token: &Token,
    user: &str,
    now: i64,
) -> Result<String, IssueError> {
    if !cfg.is_configured() {
        return Err(SendError::NotConfigured.into());
    }
    let Some(address) = token.address.as_deref() else {
        return Err(IssueError::Token(format!(
            "token {} has no address",
            token.serial
        )));
    };
    if !(6..=10).contains(&token.digits) {
        return Err(IssueError::Token(format!(
            "token {} has a code length of {} digits; 6 to 10 are sent",
            token.serial, token.digits
        )));
    }
    if !store.take_email_send(
        token.account_id,
        now,
        now - RATE_WINDOW_SECS,
        cfg.max_per_hour,
    )? {
        return Err(IssueError::RateLimited(cfg.max_per_hour));
    }
    let code = random_code(token.digits)?;
    let mail = Outgoing {
        to: address.to_string(),
        subject: render(&cfg.subject, &code, user, cfg.validity),
        body: render(&cfg.body, &code, user, cfg.validity),
    };
    mailer.send(cfg, &mail)?;
    let salt = crypto::random_vec(crypto::SALT_LEN)?;
    let hash = keys.keyed_hash(&salt, code.as_bytes());
    let validity = i64::try_from(cfg.validity.as_secs()).unwrap_or(i64::MAX);
    store.replace_email_code(token.id, &salt, &hash, now, now.saturating_add(validity))?;
    Ok(mask(address))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn addresses() {
        assert_eq!(
            check_address(" alice@example.org ").expect("ok"),
            "alice@example.org"
        );
        for bad in [
            "",
            "alice",
            "a@b@c",
            "@example.org",
            "alice@",
            "al ice@example.org",
            "alice@exa\u{7}mple.org",
            "Alice <alice@example.org>",
            "alice@.example.org",
            "alice@example..org",
        ] {
            assert!(check_address(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}@example.org", "a".repeat(250));
        assert!(check_address(&long).expect_err("long").contains("at most"));
    }

    #[test]
    fn masking() {
        assert_eq!(mask("alice@example.org"), "a***@example.org");
        assert_eq!(mask("x"), "***");
    }

    #[test]
    fn codes_have_their_length_and_vary() {
        let a = random_code(8).expect("code");
        let b = random_code(8).expect("code");
        assert_eq!(a.len(), 8);
        assert!(a.bytes().all(|c| c.is_ascii_digit()));
        assert_eq!(random_code(10).expect("code").len(), 10);
        // Two equal 8-digit codes in a row: 1 in 10^8.
        assert_ne!(*a, *b);
    }

    #[test]
    fn rendering() {
        let r = render(
            "{user}: {code} ({validity}) {{x}}",
            "12345678",
            "alice",
            Duration::from_secs(3600),
        );
        assert_eq!(r.as_str(), "alice: 12345678 (1h) {x}");
    }

    fn cfg_for(port: u16, timeout: Duration) -> EmailConfig {
        EmailConfig {
            host: "127.0.0.1".into(),
            port: Some(port),
            tls: EmailTls::None,
            from: "otpd@example.org".into(),
            timeout,
            ..EmailConfig::default()
        }
    }

    fn mail() -> Outgoing {
        Outgoing {
            to: "alice@example.org".into(),
            subject: Zeroizing::new("s".into()),
            body: Zeroizing::new("b".into()),
        }
    }

    #[test]
    fn nothing_listening_is_connection_refused() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let e = Smtp
            .send(&cfg_for(port, Duration::from_secs(2)), &mail())
            .expect_err("refused");
        assert_eq!(e, SendError::ConnectionRefused(format!("127.0.0.1:{port}")));
    }

    #[test]
    fn a_silent_relay_ends_within_the_timeout() {
        // Accepts the connection and never says a word.
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let held = std::thread::spawn(move || {
            let c = l.accept();
            std::thread::sleep(Duration::from_secs(3));
            drop(c);
        });
        let start = Instant::now();
        let e = Smtp
            .send(&cfg_for(port, Duration::from_millis(700)), &mail())
            .expect_err("timeout");
        let took = start.elapsed();
        assert!(matches!(e, SendError::Timeout { .. }), "{e:?}");
        assert!(e.to_string().contains("did not finish within 700ms"), "{e}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
        let _ = held.join();
    }

    #[test]
    fn not_configured_is_said() {
        let e = Smtp
            .send(&EmailConfig::default(), &mail())
            .expect_err("off");
        assert_eq!(e, SendError::NotConfigured);
    }
}
