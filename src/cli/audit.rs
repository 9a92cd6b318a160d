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
            outln!(
                "{} {} service={} rhost={} client={} verdict={} serial={} reason={}",
                humantime::format_rfc3339_millis(t),
                r.user,
                r.service,
                r.rhost.as_deref().unwrap_or("-"),
                r.client.as_deref().unwrap_or("-"),
                r.verdict,
                r.serial.as_deref().unwrap_or("-"),
                r.reason
            );
        }
    }
    Ok(Outcome::Ok)
}
