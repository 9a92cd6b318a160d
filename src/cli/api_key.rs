//! `otpd api-key add|list|revoke`: keys for the management API (docs/http-api.md).

use super::{fmt_time, print_json, CliError, Outcome};
use crate::admin::Admin;
use crate::model::ApiScope;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum ApiKeyCmd {
    /// Make a key; it is printed once and stored only as a keyed hash.
    Add {
        /// Names the caller in the audit, e.g. "portal" (unique).
        name: String,
        /// admin: everything the CLI does for accounts; portal: one named user per request,
        /// weakening actions with a fresh PIN+code; read: reads only.
        #[arg(long, value_parser = parse_scope)]
        scope: ApiScope,
        /// Print {"name": ..., "scope": ..., "key": ...}.
        #[arg(long)]
        json: bool,
    },
    /// Show the keys: name, scope, created, last used (never the keys).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: the next request with it is refused.
    Revoke { name: String },
}

fn parse_scope(s: &str) -> Result<ApiScope, String> {
    ApiScope::parse(s).ok_or_else(|| format!("`{s}` is not a scope; use admin, portal or read"))
}

pub fn run(a: &Admin, cmd: ApiKeyCmd) -> Result<Outcome, CliError> {
    match cmd {
        ApiKeyCmd::Add { name, scope, json } => {
            let (k, key) = a.add_api_key(&name, scope)?;
            if json {
                print_json(&serde_json::json!({
                    "name": k.name,
                    "scope": k.scope,
                    "key": key.as_str(),
                }))?;
            } else {
                outln!("API key `{}` (scope {}):", k.name, k.scope.as_str());
                outln!();
                outln!("    {}", key.as_str());
                outln!();
                outln!(
                    "Send it as `Authorization: Bearer KEY`. It is shown only now; otpd keeps a \
                     keyed hash."
                );
            }
        }
        ApiKeyCmd::List { json } => {
            let list = a.api_key_list()?;
            if json {
                print_json(&list)?;
            } else if list.is_empty() {
                outln!("no API keys");
            } else {
                outln!("{:<24} {:<7} {:<20} LAST USED", "NAME", "SCOPE", "CREATED");
                for k in &list {
                    outln!(
                        "{:<24} {:<7} {:<20} {}",
                        k.name,
                        k.scope.as_str(),
                        fmt_time(k.created_at),
                        k.last_used_at
                            .map(fmt_time)
                            .unwrap_or_else(|| "never".into())
                    );
                }
            }
        }
        ApiKeyCmd::Revoke { name } => {
            a.revoke_api_key(&name)?;
            outln!("API key `{name}` revoked");
        }
    }
    Ok(Outcome::Ok)
}
