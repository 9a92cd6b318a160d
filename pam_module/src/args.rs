//! Module arguments from the PAM configuration line.

use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_SOCKET: &str = "/run/otpd/otpd.sock";
pub const DEFAULT_TIMEOUT_MS: u64 = 3000;
/// A login must never hang for long: a larger value is almost certainly a typo (seconds
/// written as milliseconds would be the harmless direction, this catches the other one).
pub const MAX_TIMEOUT_MS: u64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnavailable {
    /// PAM_AUTHINFO_UNAVAIL: the stack fails closed.
    Fail,
    /// PAM_IGNORE: the next module (the normal password) decides.
    Defer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub socket: PathBuf,
    pub service: Option<String>,
    pub timeout: Duration,
    pub on_unavailable: OnUnavailable,
    pub use_first_pass: bool,
    pub try_first_pass: bool,
    pub prompt: Option<String>,
    pub debug: bool,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            socket: PathBuf::from(DEFAULT_SOCKET),
            service: None,
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            on_unavailable: OnUnavailable::Fail,
            use_first_pass: false,
            try_first_pass: false,
            prompt: None,
            debug: false,
        }
    }
}

/// Parses the argv of the PAM line. Problems never abort the login path: each one is
/// returned as text for the caller to log, and the setting keeps its (fail-closed) default.
pub fn parse<'a, I>(argv: I) -> (Args, Vec<String>)
where
    I: IntoIterator<Item = &'a str>,
{
    let mut args = Args::default();
    let mut problems = Vec::new();
    for raw in argv {
        let (arg, bracketed) = unbracket(raw);
        let (key, value) = match arg.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (arg.as_str(), None),
        };
        match (key, value) {
            ("socket", Some(v)) if !v.is_empty() => args.socket = PathBuf::from(v),
            ("service", Some(v)) if !v.is_empty() => args.service = Some(v.to_string()),
            ("timeout", Some(v)) => match v.parse::<u64>() {
                Ok(ms) if (1..=MAX_TIMEOUT_MS).contains(&ms) => {
                    args.timeout = Duration::from_millis(ms)
                }
                _ => problems.push(format!(
                    "bad timeout={v} (want 1..={MAX_TIMEOUT_MS} ms); using {} ms",
                    args.timeout.as_millis()
                )),
            },
            ("on_unavailable", Some("fail")) => args.on_unavailable = OnUnavailable::Fail,
            ("on_unavailable", Some("defer")) => args.on_unavailable = OnUnavailable::Defer,
            ("on_unavailable", Some(v)) => problems.push(format!(
                "bad on_unavailable={v} (want fail or defer); keeping {}",
                match args.on_unavailable {
                    OnUnavailable::Fail => "fail",
                    OnUnavailable::Defer => "defer",
                }
            )),
            ("use_first_pass", None) => args.use_first_pass = true,
            ("try_first_pass", None) => args.try_first_pass = true,
            ("prompt", Some(v)) if !v.is_empty() => args.prompt = Some(prompt_text(v, bracketed)),
            ("debug", None) => args.debug = true,
            _ => problems.push(format!("unknown argument {raw:?} ignored")),
        }
    }
    (args, problems)
}

/// Linux-PAM lets an argument contain spaces when written as `[key=a b]`; whether the
/// brackets reach the module depends on the libpam version, so accept both. Inside brackets
/// `\]` stands for a literal `]`, as pam.conf(5) documents.
fn unbracket(raw: &str) -> (String, bool) {
    match raw.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        Some(inner) => (inner.replace("\\]", "]"), true),
        None => (raw.to_string(), false),
    }
}

/// Without brackets a PAM argument cannot hold a space, so `prompt=One-time_code:` means
/// "One-time code:". A value that already has a space (bracket syntax, whether or not
/// libpam stripped the brackets) is taken literally. A trailing space is added because
/// the user types right after the prompt.
fn prompt_text(v: &str, bracketed: bool) -> String {
    let mut text = if bracketed || v.contains(' ') {
        v.to_string()
    } else {
        v.replace('_', " ")
    };
    if !text.ends_with(char::is_whitespace) {
        text.push(' ');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(argv: &[&str]) -> (Args, Vec<String>) {
        parse(argv.iter().copied())
    }

    #[test]
    fn defaults_without_arguments() {
        let (a, problems) = p(&[]);
        assert!(problems.is_empty());
        assert_eq!(a.socket, PathBuf::from("/run/otpd/otpd.sock"));
        assert_eq!(a.service, None);
        assert_eq!(a.timeout, Duration::from_millis(3000));
        assert_eq!(a.on_unavailable, OnUnavailable::Fail);
        assert!(!a.use_first_pass && !a.try_first_pass && !a.debug);
        assert_eq!(a.prompt, None);
    }

    #[test]
    fn every_argument() {
        let (a, problems) = p(&[
            "socket=/tmp/x.sock",
            "service=mail",
            "timeout=250",
            "on_unavailable=defer",
            "use_first_pass",
            "try_first_pass",
            "prompt=One-time_code:",
            "debug",
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(a.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(a.service.as_deref(), Some("mail"));
        assert_eq!(a.timeout, Duration::from_millis(250));
        assert_eq!(a.on_unavailable, OnUnavailable::Defer);
        assert!(a.use_first_pass && a.try_first_pass && a.debug);
        assert_eq!(a.prompt.as_deref(), Some("One-time code: "));
    }

    #[test]
    fn bracket_syntax_keeps_spaces_and_underscores() {
        let (a, problems) = p(&["[prompt=PIN_and code: ]"]);
        assert!(problems.is_empty());
        assert_eq!(a.prompt.as_deref(), Some("PIN_and code: "));
        // The form libpam hands over after stripping the brackets itself.
        let (a, _) = p(&["prompt=PIN and code:"]);
        assert_eq!(a.prompt.as_deref(), Some("PIN and code: "));
        let (a, _) = p(&["[prompt=a \\] b]"]);
        assert_eq!(a.prompt.as_deref(), Some("a ] b "));
    }

    #[test]
    fn unknown_and_malformed_arguments_are_reported_not_fatal() {
        let (a, problems) = p(&[
            "nosuch",
            "timeout=abc",
            "timeout=0",
            "timeout=600001",
            "on_unavailable=maybe",
            "debug=1",
            "socket=",
            "socket=/ok.sock",
        ]);
        assert_eq!(problems.len(), 7, "{problems:?}");
        assert!(problems[0].contains("unknown argument \"nosuch\""));
        assert!(problems[1].contains("bad timeout=abc"));
        assert!(problems[4].contains("bad on_unavailable=maybe"));
        assert_eq!(a.timeout, Duration::from_millis(3000));
        assert_eq!(a.on_unavailable, OnUnavailable::Fail);
        assert!(!a.debug);
        assert_eq!(a.socket, PathBuf::from("/ok.sock"));
    }

    #[test]
    fn later_argument_wins() {
        let (a, _) = p(&["on_unavailable=defer", "on_unavailable=fail", "timeout=10"]);
        assert_eq!(a.on_unavailable, OnUnavailable::Fail);
        assert_eq!(a.timeout, Duration::from_millis(10));
    }
}
