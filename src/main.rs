#![deny(clippy::unwrap_used)]

fn main() -> std::process::ExitCode {
    otpd::cli::run(otpd::cli::Cli::from_env())
}
