use super::{fmt_time, print_json, CliError, Outcome};
use crate::admin::Admin;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum BackupCodesCmd {
    /// Make a new set of 10 one-use codes and print it once; the old set stops working.
    Generate {
        user: String,
        /// Print {"codes": [...]} instead of the sheet to cut out.
        #[arg(long)]
        json: bool,
    },
    /// How many codes are left (never the codes).
    Status {
        user: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(a: &Admin, cmd: BackupCodesCmd) -> Result<Outcome, CliError> {
    match cmd {
        BackupCodesCmd::Generate { user, json } => {
            let set = a.generate_backup_codes(&user)?;
            if json {
                let codes: Vec<&str> = set.codes.iter().map(|c| c.as_str()).collect();
                print_json(&serde_json::json!({ "codes": codes }))?;
            } else {
                let codes: Vec<&str> = set.codes.iter().map(|c| c.as_str()).collect();
                out!(
                    "{}",
                    sheet(&set.token.user, &fmt_time(a.now_secs()), &codes)
                );
            }
        }
        BackupCodesCmd::Status { user, json } => {
            let st = a.backup_status(&user)?;
            let name = a.account(&user)?.name;
            if json {
                print_json(&match &st {
                    Some(s) => serde_json::json!({
                        "user": name,
                        "serial": s.token.serial,
                        "state": s.token.state,
                        "left": s.left,
                        "total": s.total,
                        "last_used_at": s.token.last_used_at,
                    }),
                    None => serde_json::json!({ "user": name, "left": 0, "total": 0 }),
                })?;
            } else {
                match st {
                    Some(s) => outln!(
                        "{name}: {} of {} backup codes left ({}; last used {})",
                        s.left,
                        s.total,
                        s.token.state.as_str(),
                        s.token
                            .last_used_at
                            .map(fmt_time)
                            .unwrap_or_else(|| "never".into())
                    ),
                    None => {
                        outln!("{name} has no backup codes (otpd backup-codes generate {name})")
                    }
                }
            }
        }
    }
    Ok(Outcome::Ok)
}

/// The sheet a user prints and cuts out: two columns of numbered codes inside cut lines,
/// with the one rule they need. 64 columns wide, so it fits any terminal and any page.
fn sheet(user: &str, when: &str, codes: &[&str]) -> String {
    let cut = "- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -\n";
    let mut s = String::new();
    s.push_str(cut);
    s.push_str(&format!("  Backup codes for {user}\n  made {when}\n\n"));
    let half = codes.len().div_ceil(2);
    for i in 0..half {
        let left = format!("{:>2}.  {}", i + 1, codes[i]);
        match codes.get(i + half) {
            Some(c) => s.push_str(&format!("    {left}        {:>2}.  {c}\n", i + half + 1)),
            None => s.push_str(&format!("    {left}\n")),
        }
    }
    s.push_str(
        "\n  Type your PIN followed by one code where you would type a\n  \
         one-time code. Each code works once. A new sheet replaces\n  \
         this one. Keep it apart from your phone.\n",
    );
    s.push_str(cut);
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn sheet_holds_every_code_once_and_fits_64_columns() {
        let codes = [
            "00000001", "00000002", "00000003", "00000004", "00000005", "00000006", "00000007",
            "00000008", "00000009", "00000010",
        ];
        let s = super::sheet("alice", "2026-11-23T10:00:00Z", &codes);
        for c in codes {
            assert_eq!(s.matches(c).count(), 1, "{c}\n{s}");
        }
        assert!(s.lines().all(|l| l.chars().count() <= 64), "{s}");
    }
}
