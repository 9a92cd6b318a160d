//! `otpd app-password add|list|revoke`.

use super::{fmt_time, print_json, CliError, Outcome};
use crate::admin::Admin;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum AppPasswordCmd {
    /// Make an app password for a mail client; it is printed once and never again.
    Add {
        user: String,
        /// What it is for, e.g. "Thunderbird laptop" (unique per account).
        #[arg(long)]
        label: String,
        /// Service classes it works for, comma-separated (default: every class the account's
        /// level asks an app password for).
        #[arg(long, value_delimiter = ',')]
        services: Vec<String>,
        /// Print {"password": ..., "id": ..., "label": ..., "services": [...]}.
        #[arg(long)]
        json: bool,
    },
    /// Show a user's app passwords: label, services, created, last used and from where.
    List {
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke one app password by its label or its id.
    Revoke {
        user: String,
        /// The label, or the id shown by `list`.
        which: String,
    },
}

pub fn run(a: &Admin, cmd: AppPasswordCmd) -> Result<Outcome, CliError> {
    match cmd {
        AppPasswordCmd::Add {
            user,
            label,
            services,
            json,
        } => {
            let n = a.add_app_password(&user, &label, &services)?;
            let ap = &n.app_password;
            if json {
                print_json(&serde_json::json!({
                    "password": n.password.as_str(),
                    "id": ap.id,
                    "label": ap.label,
                    "services": ap.services,
                    "effective_for": n.effective_for,
                }))?;
            } else {
                outln!("app password \"{}\" (id {}) for {user}:", ap.label, ap.id);
                outln!();
                outln!("    {}", n.password.as_str());
                outln!();
                outln!(
                    "Type it into the mail client instead of the normal password (dashes and \
                     spaces may be left out). It is shown only now."
                );
                outln!("services:  {}", services_text(&ap.services));
            }
            if n.effective_for.is_empty() {
                let level = a.account(&user)?.level;
                eprintln!(
                    "note: level `{level}` of {user} asks for an app password for none of its \
                     services; this one works once the level does (e.g. app-passwords)"
                );
            }
        }
        AppPasswordCmd::List { user, json } => {
            let list = a.app_passwords(&user)?;
            if json {
                print_json(&list)?;
            } else if list.is_empty() {
                outln!("{user} has no app passwords");
            } else {
                outln!(
                    "{:>4}  {:<28} {:<14} {:<20} {:<20} FROM",
                    "ID",
                    "LABEL",
                    "SERVICES",
                    "CREATED",
                    "LAST USED"
                );
                for ap in &list {
                    outln!(
                        "{:>4}  {:<28} {:<14} {:<20} {:<20} {}",
                        ap.id,
                        ap.label,
                        services_text(&ap.services),
                        fmt_time(ap.created_at),
                        ap.last_used_at
                            .map(fmt_time)
                            .unwrap_or_else(|| "never".into()),
                        ap.last_used_from.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        AppPasswordCmd::Revoke { user, which } => {
            let ap = a.revoke_app_password(&user, &which)?;
            outln!(
                "app password \"{}\" (id {}) of {user} revoked",
                ap.label,
                ap.id
            );
        }
    }
    Ok(Outcome::Ok)
}

fn services_text(s: &[String]) -> String {
    if s.is_empty() {
        "all".into()
    } else {
        s.join(",")
    }
}
