use super::input::read_secret;
use super::{CliError, Outcome};
use crate::admin::Admin;
use crate::engine::{CheckRequest, DeviceRequest, Engine, Verdict};
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
    /// standard input. Visible to other local users in `ps`. May begin with `-`.
    #[arg(long, allow_hyphen_values = true)]
    password: Option<String>,
    /// The front-end client the login comes through (trusted devices are bound to it).
    #[arg(long, default_value = "cli")]
    client: String,
    /// After an accepted PIN+code, trust this device under this label: its device token is
    /// printed once (the class needs `trusted_device_ttl`).
    #[arg(long, value_name = "LABEL")]
    remember_device: Option<String>,
    /// Log in with the PIN alone and this trusted device's token. Visible in `ps`. A token
    /// is base64url and begins with `-` once in 64.
    #[arg(long, value_name = "TOKEN", allow_hyphen_values = true)]
    device_token: Option<String>,
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
        client: Some(args.client),
        state: None,
        defer_is_reject: false,
        device: DeviceRequest {
            remember: args.remember_device,
            token: args.device_token.map(Zeroizing::new),
        },
        code_only: false,
    });
    let token = d.device.as_ref().map(|dev| dev.token.as_str());
    if args.json {
        super::print_json(&serde_json::json!({
            "verdict": d.verdict,
            "message": d.message,
            "serial": d.serial,
            "reason": d.reason,
            "state": d.state,
            "device_token": token,
            "device_id": d.device.as_ref().map(|dev| dev.id),
        }))?;
    } else {
        outln!("{}: {} ({})", d.verdict.as_str(), d.message, d.reason);
        if let Some(t) = token {
            outln!("device token (shown only now): {t}");
        }
    }
    Ok(if d.verdict == Verdict::Accept {
        Outcome::Ok
    } else {
        Outcome::Fail
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<crate::cli::Cli, clap::Error> {
        crate::cli::Cli::try_parse_from(args)
    }

    /// A device token is base64url, and a password is anything: either may begin with `-`
    /// (a flaky test found a token that did, and `otpd check` refused it as a flag).
    #[test]
    fn a_device_token_or_password_may_begin_with_a_dash() {
        for (flag, value) in [("--device-token", "-ZqT0abc_def"), ("--password", "-1234")] {
            let cli = parse(&["otpd", "check", "bob", flag, value]).expect("parses");
            let crate::cli::Command::Check(a) = cli.command else {
                panic!("not check");
            };
            let got = if flag == "--password" {
                a.password
            } else {
                a.device_token
            };
            assert_eq!(got.as_deref(), Some(value));
        }
        // A value is still required: the option at the end of the line is an error. (Followed
        // by another option, that option is now taken as the value and the login fails.)
        assert!(parse(&["otpd", "check", "bob", "--device-token"]).is_err());
    }
}
