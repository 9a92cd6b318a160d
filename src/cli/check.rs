use super::input::read_secret;
use super::{CliError, Outcome};
use crate::admin::Admin;
use crate::engine::{CheckRequest, Engine, Verdict};
use clap::Args;
use zeroize::Zeroizing;

#[derive(Args, Debug)]
pub struct CheckArgs {
    user: String,
    /// Service class (web, mail, ssh, vpn, or one from config) or a PAM service name.
    #[arg(long, default_value = "vpn")]
    service: String,
    /// The address the login comes from.
    #[arg(long)]
    rhost: Option<String>,
    /// The password (PIN followed by the code) on the command line; otherwise it is read from
    /// standard input. Visible to other local users in `ps`.
    #[arg(long)]
    password: Option<String>,
    #[arg(long)]
    json: bool,
}

pub fn run(a: &Admin, args: CheckArgs) -> Result<Outcome, CliError> {
    if let Some(r) = &args.rhost {
        if r.parse::<std::net::IpAddr>().is_err() {
            return Err(CliError::Other(format!(
                "--rhost `{r}` is not an IP address"
            )));
        }
    }
    let known = a.cfg.class_names();
    // Exactly the daemon's engine, so `otpd check` decides as `serve` would.
    let engine = Engine::for_daemon(
        a.cfg.clone(),
        a.store.clone(),
        a.keys.clone(),
        a.clock.clone(),
    );
    if engine
        .resolve_class(&args.service, args.rhost.as_deref())
        .is_none()
    {
        return Err(CliError::Other(format!(
            "unknown service `{}`; classes: {} (or a PAM service name mapped in [services.NAME] pam_services)",
            args.service,
            known.join(", ")
        )));
    }
    let password = match args.password {
        Some(p) => Zeroizing::new(p),
        None => read_secret("PIN+code: ")?,
    };
    let d = engine.check(&CheckRequest {
        user: args.user,
        password,
        service: args.service,
        rhost: args.rhost,
        client: Some("cli".into()),
        state: None,
        defer_is_reject: false,
        code_only: false,
    });
    if args.json {
        super::print_json(&serde_json::json!({
            "verdict": d.verdict,
            "message": d.message,
            "serial": d.serial,
            "reason": d.reason,
            "state": d.state,
        }))?;
    } else {
        outln!("{}: {} ({})", d.verdict.as_str(), d.message, d.reason);
    }
    Ok(if d.verdict == Verdict::Accept {
        Outcome::Ok
    } else {
        Outcome::Fail
    })
}
