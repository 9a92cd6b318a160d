use super::{CliError, Outcome};
use crate::admin::Admin;
use crate::model::AuditFilter;
use clap::Args;

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Only this user.
    #[arg(long)]
    user: Option<String>,
    /// Only records since a time: RFC 3339 (2026-11-23T10:00:00Z) or an age (30m, 2h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// At most this many (the newest); 0 for all.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// One JSON object per line, for log shippers.
    #[arg(long)]
    json: bool,
}

fn parse_since(s: &str, now_ms: i64) -> Result<i64, CliError> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        let d = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| CliError::Other(format!("--since {s}: before 1970")))?;
        return Ok(d.as_millis() as i64);
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now_ms - d.as_millis() as i64);
    }
    Err(CliError::Other(format!(
        "--since `{s}`: give a time (2026-11-23T10:00:00Z) or an age (30m, 2h, 7d)"
    )))
}

pub fn run(a: &Admin, args: AuditArgs) -> Result<Outcome, CliError> {
    let since_ms = args
        .since
        .as_deref()
        .map(|s| parse_since(s, a.clock.now_ms()))
        .transpose()?;
    let user = args.user.as_deref().map(|u| a.user_name(u)).transpose()?;
    let recs = a.store.audit(&AuditFilter {
        user,
        since_ms,
        limit: args.limit,
    })?;
    for r in &recs {
        if args.json {
            let line = serde_json::to_string(r).map_err(|e| CliError::Other(e.to_string()))?;
            outln!("{line}");
        } else {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.ts_ms as u64);
            let opt = |v: &Option<String>| v.as_deref().map_or_else(|| "-".to_string(), field);
            outln!(
                "{} {} service={} rhost={} client={} verdict={} serial={} reason={}",
                humantime::format_rfc3339_millis(t),
                field(&r.user),
                field(&r.service),
                opt(&r.rhost),
                opt(&r.client),
                field(&r.verdict),
                opt(&r.serial),
                field(&r.reason)
            );
        }
    }
    Ok(Outcome::Ok)
}

/// A free-text value of an audit line as it is safe to print: as it is when it is one plain
/// word, else quoted with every quote, backslash, control, invisible or line-breaking
/// character escaped. A user name such as `bob verdict=accept` or one with a newline cannot
/// then pass for another field or another record.
fn field(v: &str) -> String {
    let plain = !v.is_empty()
        && v != "-"
        && v.chars().all(|c| {
            (c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '='))
                || (!c.is_ascii() && c.is_alphanumeric())
        });
    if plain {
        v.to_string()
    } else {
        format!("{v:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn fields_cannot_forge_fields_or_lines() {
        assert_eq!(field("alice"), "alice");
        assert_eq!(field("jürgen"), "jürgen");
        assert_eq!(field("192.0.2.7"), "192.0.2.7");
        assert_eq!(
            field("bob verdict=accept reason=ok"),
            "\"bob verdict=accept reason=ok\""
        );
        assert_eq!(field("a\nb"), "\"a\\nb\"");
        assert_eq!(field("x\"y"), "\"x\\\"y\"");
        assert_eq!(field("a\u{202e}b"), "\"a\\u{202e}b\"");
        assert_eq!(field(""), "\"\"");
        assert_eq!(field("-"), "\"-\"");
        assert_eq!(field("wrong PIN or code"), "\"wrong PIN or code\"");
    }
}
