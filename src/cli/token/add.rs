//! `otpd token add KIND USER ...`: one subcommand per registered kind, each with the flags
//! its class declares ([`TokenClass::options`]) and the ones every kind has. Built from the
//! registry at run time, so a new kind needs no change here.

use crate::model::TokenKind;
use crate::tokens::{self, Opt, Options, TokenClass};
use clap::builder::PossibleValuesParser;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory};
use std::ffi::OsString;
use std::path::PathBuf;

/// A parsed `token add`.
#[derive(Debug)]
pub struct AddArgs {
    pub kind: TokenKind,
    pub user: String,
    pub options: Options,
    pub label: String,
    pub active: bool,
    pub qr: Option<PathBuf>,
    pub no_qr: bool,
    pub json: bool,
}

fn kind_command(c: &dyn TokenClass, opts: &'static [Opt]) -> Command {
    let mut cmd = Command::new(c.kind().as_str()).about(c.about()).arg(
        Arg::new("user")
            .value_name("USER")
            .required(true)
            .help("The account the token is for"),
    );
    for o in opts {
        let mut a = Arg::new(o.name)
            .long(o.name)
            .value_name(o.value_name)
            .help(o.help)
            .required(o.required);
        if let Some(d) = o.default {
            a = a.default_value(d);
        }
        if !o.choices.is_empty() {
            a = a.value_parser(PossibleValuesParser::new(o.choices));
        }
        cmd = cmd.arg(a);
    }
    cmd.arg(
        Arg::new("label")
            .long("label")
            .value_name("L")
            .default_value("")
            .help("A name for the token, at most 64 characters"),
    )
    .arg(
        Arg::new("active")
            .long("active")
            .action(ArgAction::SetTrue)
            .help("Active at once, without a confirming code (admin imports)"),
    )
    .arg(
        Arg::new("qr")
            .long("qr")
            .value_name("FILE")
            .value_parser(clap::value_parser!(PathBuf))
            .help("Also write the QR code to FILE.svg or FILE.png (kinds with a secret)"),
    )
    .arg(
        Arg::new("no-qr")
            .long("no-qr")
            .action(ArgAction::SetTrue)
            .help("Do not draw the QR code in the terminal"),
    )
    .arg(
        Arg::new("json")
            .long("json")
            .action(ArgAction::SetTrue)
            .help("Print the new token as JSON"),
    )
}

impl clap::Args for AddArgs {
    fn augment_args(cmd: Command) -> Command {
        let kinds = tokens::classes()
            .iter()
            .filter_map(|c| c.options().map(|o| kind_command(*c, o)));
        cmd.subcommand_required(true)
            .subcommand_value_name("KIND")
            .subcommands(kinds)
    }
    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for AddArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let missing = || clap::Error::new(clap::error::ErrorKind::MissingSubcommand);
        let (name, sub) = m.subcommand().ok_or_else(missing)?;
        let kind = TokenKind::parse(name).ok_or_else(missing)?;
        let mut options = Options::default();
        for o in tokens::class(kind).options().unwrap_or(&[]) {
            if let Some(v) = sub.get_one::<String>(o.name) {
                options.set(o.name, v.as_str());
            }
        }
        let text = |id: &str| sub.get_one::<String>(id).cloned().unwrap_or_default();
        Ok(AddArgs {
            kind,
            user: text("user"),
            options,
            label: text("label"),
            active: sub.get_flag("active"),
            qr: sub.get_one::<PathBuf>("qr").cloned(),
            no_qr: sub.get_flag("no-qr"),
            json: sub.get_flag("json"),
        })
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

/// `token add USER --type KIND ...`, the spelling from before kinds were subcommands (docs,
/// scripts), rewritten to `token add KIND USER ...`. An unknown kind gets clap's own
/// "invalid value" error, listing the kinds.
pub fn legacy_type_flag(mut args: Vec<OsString>) -> Vec<OsString> {
    let Some(add) = args
        .windows(2)
        .position(|w| w[0] == "token" && w[1] == "add")
        .map(|i| i + 2)
    else {
        return args;
    };
    let known: Vec<&str> = tokens::classes()
        .iter()
        .filter(|c| c.options().is_some())
        .map(|c| c.kind().as_str())
        .collect();
    let refuse = |kind: clap::error::ErrorKind, msg: String| -> ! {
        super::super::Cli::command().error(kind, msg).exit()
    };
    let mut kind = None;
    let mut i = add;
    while i < args.len() {
        let a = args[i].to_string_lossy().into_owned();
        if a == "--" {
            break;
        }
        if a == "--type" {
            if i + 1 >= args.len() {
                refuse(
                    clap::error::ErrorKind::InvalidValue,
                    format!(
                        "a value is required for '--type <KIND>'\n  [possible values: {}]",
                        known.join(", ")
                    ),
                );
            }
            kind = Some(args[i + 1].to_string_lossy().into_owned());
            args.drain(i..i + 2);
            break;
        }
        if let Some(v) = a.strip_prefix("--type=") {
            kind = Some(v.to_string());
            args.remove(i);
            break;
        }
        i += 1;
    }
    let Some(kind) = kind else {
        // `token add alice` alone: say what is missing rather than "unrecognized subcommand".
        if let Some(first) = args.get(add).map(|a| a.to_string_lossy().into_owned()) {
            if !first.starts_with('-') && first != "help" && !known.contains(&first.as_str()) {
                refuse(
                    clap::error::ErrorKind::InvalidSubcommand,
                    format!(
                        "`{first}` is not a token kind: write `otpd token add KIND {first} ...`\n  \
                         [kinds: {}]",
                        known.join(", ")
                    ),
                );
            }
        }
        return args;
    };
    if !known.contains(&kind.as_str()) {
        refuse(
            clap::error::ErrorKind::InvalidValue,
            format!(
                "invalid value '{kind}' for '--type <KIND>'\n  [possible values: {}]",
                known.join(", ")
            ),
        );
    }
    args.insert(add, kind.into());
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<crate::cli::Cli, clap::Error> {
        let v = args.iter().map(OsString::from).collect();
        crate::cli::Cli::try_parse_from(legacy_type_flag(v))
    }

    fn add(args: &[&str]) -> AddArgs {
        match parse(args).expect("parses").command {
            crate::cli::Command::Token(super::super::TokenCmd::Add(a)) => a,
            other => panic!("not token add: {other:?}"),
        }
    }

    #[test]
    fn both_spellings_give_the_same_enrolment() {
        let old = add(&[
            "otpd", "token", "add", "alice", "--type", "totp", "--digits", "8", "--active",
        ]);
        let new = add(&[
            "otpd", "token", "add", "totp", "alice", "--digits", "8", "--active",
        ]);
        let eq = add(&[
            "otpd",
            "token",
            "add",
            "alice",
            "--type=totp",
            "--digits=8",
            "--active",
        ]);
        for a in [&old, &new, &eq] {
            assert_eq!(a.kind, TokenKind::Totp);
            assert_eq!(a.user, "alice");
            assert_eq!(a.options.get("digits"), Some("8"));
            assert_eq!(a.options.get("period"), Some("30"));
            assert_eq!(a.options.get("algorithm"), Some("sha1"));
            assert!(a.active);
        }
        let g = add(&[
            "otpd", "--config", "x.toml", "token", "add", "bob", "--type", "motp", "--secret",
            "ab", "--mpin", "12",
        ]);
        assert_eq!(g.kind, TokenKind::Motp);
        assert_eq!(g.options.get("mpin"), Some("12"));
    }

    #[test]
    fn each_kind_takes_only_its_own_flags() {
        let e = parse(&["otpd", "token", "add", "email", "bob", "--secret", "x"])
            .expect_err("an e-mail token has no secret");
        assert!(e.to_string().contains("--secret"), "{e}");
        let e = parse(&["otpd", "token", "add", "yubikey", "bob", "--public-id", "x"])
            .expect_err("needs the private id and key");
        assert!(e.to_string().contains("--private-id"), "{e}");
        // (Without the rewrite, which would end this process with its own message.)
        let e = crate::cli::Cli::try_parse_from(["otpd", "token", "add", "backup", "bob"])
            .expect_err("not by token add");
        assert!(e.to_string().contains("backup"), "{e}");
        let e = parse(&["otpd", "token", "add", "totp", "bob", "--algorithm", "md5"])
            .expect_err("no such hash");
        assert!(e.to_string().contains("md5"), "{e}");
    }
}
