//! Reading a secret (PIN, password) from standard input without echo when it is a terminal.

use super::CliError;
use std::io::{BufRead, IsTerminal, Read, Write};
use zeroize::Zeroizing;

/// Longest secret line read; anything longer is refused rather than cut.
const MAX_LINE: usize = 4096;

pub fn read_secret(prompt: &str) -> Result<Zeroizing<String>, CliError> {
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let _echo = if tty {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        EchoOff::new()
    } else {
        None
    };
    let mut line = Zeroizing::new(String::new());
    let lock = stdin.lock();
    let n = Read::take(lock, MAX_LINE as u64 + 1)
        .read_line(&mut line)
        .map_err(|e| CliError::Other(format!("reading standard input: {e}")))?;
    if tty {
        eprintln!();
    }
    if n == 0 {
        return Err(CliError::Other(
            "nothing on standard input (expected one line)".into(),
        ));
    }
    if line.len() > MAX_LINE {
        return Err(CliError::Other(format!(
            "input line longer than {MAX_LINE} bytes"
        )));
    }
    while line.ends_with('\n') || line.ends_with('\r') {
        line.pop();
    }
    Ok(line)
}

/// Turns terminal echo off while alive.
struct EchoOff(libc::termios);

impl EchoOff {
    fn new() -> Option<EchoOff> {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a properly sized termios struct.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            let old = t;
            t.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return None;
            }
            Some(EchoOff(old))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the attributes read in new().
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.0);
        }
    }
}
