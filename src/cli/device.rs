//! `otpd device list|revoke`: a user's trusted devices.

use super::{fmt_time, print_json, CliError, Outcome};
use crate::admin::Admin;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum DeviceCmd {
    /// Show a user's trusted devices: id, label, class, client, created, last used, expires.
    List {
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke one trusted device by its id, or all of the user's with --all.
    Revoke {
        user: String,
        /// The id shown by `list`.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Every trusted device of the user.
        #[arg(long)]
        all: bool,
    },
}

pub fn run(a: &Admin, cmd: DeviceCmd) -> Result<Outcome, CliError> {
    match cmd {
        DeviceCmd::List { user, json } => {
            let list = a.devices(&user)?;
            let now = a.now_secs();
            if json {
                let rows: Vec<_> = list
                    .iter()
                    .map(|d| {
                        serde_json::json!({
                            "id": d.id,
                            "label": d.label,
                            "class": d.class,
                            "client": d.client,
                            "created_at": d.created_at,
                            "last_used_at": d.last_used_at,
                            "expires_at": d.expires_at,
                            "expired": d.expires_at <= now,
                        })
                    })
                    .collect();
                print_json(&rows)?;
            } else if list.is_empty() {
                outln!("{user} has no trusted devices");
            } else {
                outln!(
                    "{:>4}  {:<28} {:<8} {:<12} {:<20} {:<20} EXPIRES",
                    "ID",
                    "LABEL",
                    "CLASS",
                    "CLIENT",
                    "CREATED",
                    "LAST USED"
                );
                for d in &list {
                    let expires = if d.expires_at <= now {
                        format!("{} (expired)", fmt_time(d.expires_at))
                    } else {
                        fmt_time(d.expires_at)
                    };
                    outln!(
                        "{:>4}  {:<28} {:<8} {:<12} {:<20} {:<20} {}",
                        d.id,
                        d.label,
                        d.class,
                        d.client.as_deref().unwrap_or("-"),
                        fmt_time(d.created_at),
                        d.last_used_at
                            .map(fmt_time)
                            .unwrap_or_else(|| "never".into()),
                        expires
                    );
                }
            }
        }
        DeviceCmd::Revoke { user, id, all } => {
            if all {
                let n = a.revoke_devices(&user)?;
                outln!("{n} trusted device(s) of {user} revoked");
            } else {
                let raw = id.unwrap_or_default();
                let id: i64 = raw.trim().parse().map_err(|_| {
                    CliError::Other(format!(
                        "`{raw}` is not a device id; give the number shown by otpd device list \
                         {user}, or --all"
                    ))
                })?;
                let d = a.revoke_device(&user, id)?;
                outln!(
                    "trusted device \"{}\" (id {}) of {user} revoked",
                    d.label,
                    d.id
                );
            }
        }
    }
    Ok(Outcome::Ok)
}
