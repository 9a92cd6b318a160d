#![deny(clippy::unwrap_used)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    otpd::cli::run(otpd::cli::Cli::parse())
}
