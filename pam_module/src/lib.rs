//! `pam_otpd.so`: asks the otpd daemon over its Unix socket whether a login may pass.
//!
//! Loaded into arbitrary, often multithreaded hosts (sshd, dovecot auth), so it is strictly
//! synchronous: no runtime, no threads, no global mutable state, and no panic ever crosses
//! the C boundary. Every call opens its own connection and is bounded by `timeout=`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod args;
pub mod client;
mod ffi;
mod pam;

use args::{Args, OnUnavailable};
use ffi::PamHandle;
use otpd_proto::client::{self as protocol, AccountAnswer, CheckVerdict};
use pam::{Pam, LOG_DEBUG, LOG_ERR};
use std::ffi::CStr;
use std::os::raw::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};
use zeroize::Zeroizing;

/// After this many challenge answers the daemon is looping; stop asking the user.
const MAX_CHALLENGE_ROUNDS: usize = 3;
const DEFAULT_CHALLENGE_PROMPT: &str = "One-time code: ";

/// Runs `body`, turning a panic into `on_panic`: unwinding into C is undefined behaviour.
fn guard(on_panic: c_int, body: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(on_panic)
}

/// # Safety
/// `argv` must hold `argc` NUL-terminated strings, as libpam guarantees.
unsafe fn collect_args(argc: c_int, argv: *const *const c_char) -> Vec<String> {
    if argv.is_null() || argc <= 0 {
        return Vec::new();
    }
    (0..argc as usize)
        .filter_map(|i| {
            let p = *argv.add(i);
            (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
        })
        .collect()
}

/// # Safety
/// See [`collect_args`].
unsafe fn load_args(pam: &Pam, argc: c_int, argv: *const *const c_char) -> Args {
    let raw = collect_args(argc, argv);
    let (args, problems) = args::parse(raw.iter().map(String::as_str));
    for problem in problems {
        pam.syslog(LOG_ERR, &problem);
    }
    args
}

/// What the daemon is told: the user, the service class and the remote host.
struct Subject {
    user: String,
    service: String,
    rhost: Option<String>,
}

fn subject(pam: &Pam, args: &Args) -> Result<Subject, c_int> {
    let user = match pam.user() {
        Ok(u) if !u.is_empty() => u,
        Ok(_) => {
            pam.syslog(LOG_ERR, "empty user name");
            return Err(ffi::PAM_AUTH_ERR);
        }
        Err(rc) => {
            pam.syslog(
                LOG_ERR,
                &format!("cannot get the user name (PAM error {rc})"),
            );
            return Err(conv_or(rc, ffi::PAM_AUTH_ERR));
        }
    };
    // A lossy conversion could map two distinct byte strings to one daemon account.
    let user = String::from_utf8(user).map_err(|_| {
        pam.syslog(LOG_ERR, "user name is not UTF-8; refusing");
        ffi::PAM_AUTH_ERR
    })?;
    let service = match &args.service {
        Some(class) => class.clone(),
        None => pam
            .string_item(ffi::PAM_SERVICE)
            .map(|s| String::from_utf8_lossy(&s).into_owned())
            .unwrap_or_default(),
    };
    let rhost = pam
        .string_item(ffi::PAM_RHOST)
        .filter(|r| !r.is_empty())
        .map(|r| String::from_utf8_lossy(&r).into_owned());
    Ok(Subject {
        user,
        service,
        rhost,
    })
}

/// Conversation problems keep their own code so the application can tell them apart;
/// everything else becomes `other`. PAM_CONV_AGAIN maps to PAM_INCOMPLETE by convention.
fn conv_or(rc: c_int, other: c_int) -> c_int {
    match rc {
        ffi::PAM_CONV_ERR | ffi::PAM_BUF_ERR => rc,
        ffi::PAM_CONV_AGAIN => ffi::PAM_INCOMPLETE,
        _ => other,
    }
}

/// JSON needs UTF-8. Rather than refuse, invalid bytes become U+FFFD: such a password can
/// never be a valid PIN+code, and the daemon may still answer defer for the account so the
/// normal password stack gets its chance.
fn secret_string(mut bytes: Zeroizing<Vec<u8>>) -> Zeroizing<String> {
    match String::from_utf8(std::mem::take(&mut *bytes)) {
        Ok(s) => Zeroizing::new(s),
        Err(e) => {
            let raw = Zeroizing::new(e.into_bytes());
            Zeroizing::new(String::from_utf8_lossy(&raw).into_owned())
        }
    }
}

fn unavailable(pam: &Pam, args: &Args, what: &str, code_if_fail: c_int) -> c_int {
    let (code, outcome) = match args.on_unavailable {
        OnUnavailable::Fail => (code_if_fail, "failing closed"),
        OnUnavailable::Defer => (ffi::PAM_IGNORE, "deferring to the next module"),
    };
    pam.syslog(
        LOG_ERR,
        &format!(
            "otpd unreachable at {}: {what}; {outcome}",
            args.socket.display()
        ),
    );
    code
}

fn describe_timeout(args: &Args, e: &client::ExchangeError) -> String {
    match e {
        client::ExchangeError::Timeout(_) => {
            format!("{e} (timeout={} ms)", args.timeout.as_millis())
        }
        _ => e.to_string(),
    }
}

fn authenticate(pam: &Pam, flags: c_int, args: &Args) -> c_int {
    let who = match subject(pam, args) {
        Ok(s) => s,
        Err(rc) => return rc,
    };
    let first = if args.use_first_pass {
        match pam.authtok_item() {
            Some(tok) => tok,
            None => {
                pam.syslog(
                    LOG_ERR,
                    "use_first_pass given but no earlier module set a password",
                );
                return ffi::PAM_AUTH_ERR;
            }
        }
    } else {
        // try_first_pass needs nothing extra: pam_get_authtok already reuses PAM_AUTHTOK.
        match pam.get_authtok(args.prompt.as_deref()) {
            Ok(tok) => tok,
            Err(rc) => {
                pam.syslog(
                    LOG_ERR,
                    &format!("cannot get the password (PAM error {rc})"),
                );
                return conv_or(rc, ffi::PAM_AUTH_ERR);
            }
        }
    };
    let mut password = secret_string(first);
    let mut state: Option<Zeroizing<String>> = None;

    for round in 0..=MAX_CHALLENGE_ROUNDS {
        let request = protocol::encode_check(
            &who.user,
            &password,
            &who.service,
            who.rhost.as_deref(),
            state.as_deref().map(String::as_str),
            deadline_ms(args.timeout),
        );
        let line = match client::exchange(&args.socket, &request, args.timeout) {
            Ok(line) => line,
            Err(e) => {
                return unavailable(
                    pam,
                    args,
                    &describe_timeout(args, &e),
                    ffi::PAM_AUTHINFO_UNAVAIL,
                )
            }
        };
        drop(request);
        let verdict = match protocol::parse_check(&line) {
            Ok(v) => v,
            Err(e) => return unavailable(pam, args, &e.to_string(), ffi::PAM_AUTHINFO_UNAVAIL),
        };
        if args.debug {
            pam.syslog(
                LOG_DEBUG,
                &format!(
                    "check user={} service={} rhost={} round={round}: {}",
                    who.user,
                    who.service,
                    who.rhost.as_deref().unwrap_or("-"),
                    verdict_name(&verdict)
                ),
            );
        }
        match verdict {
            CheckVerdict::Accept => return ffi::PAM_SUCCESS,
            // The reject message is not shown: a wrong answer must look the same for every
            // account, or the message becomes an oracle for which users exist.
            CheckVerdict::Reject => return ffi::PAM_AUTH_ERR,
            CheckVerdict::Defer => return ffi::PAM_IGNORE,
            CheckVerdict::Deny { message } => {
                if flags & ffi::PAM_SILENT == 0 && !message.is_empty() {
                    pam.error_msg(&message);
                }
                return ffi::PAM_AUTH_ERR;
            }
            CheckVerdict::Challenge {
                message,
                state: next,
            } => {
                if round == MAX_CHALLENGE_ROUNDS {
                    pam.syslog(
                        LOG_ERR,
                        &format!(
                            "otpd asked more than {MAX_CHALLENGE_ROUNDS} challenges for user {}; refusing",
                            who.user
                        ),
                    );
                    return ffi::PAM_AUTH_ERR;
                }
                let text = if message.is_empty() {
                    DEFAULT_CHALLENGE_PROMPT
                } else {
                    message.as_str()
                };
                match pam.prompt_echo_off(text) {
                    Ok(answer) => password = secret_string(answer),
                    Err(rc) => {
                        pam.syslog(
                            LOG_ERR,
                            &format!(
                                "conversation failed on the challenge prompt (PAM error {rc})"
                            ),
                        );
                        return conv_or(rc, ffi::PAM_CONV_ERR);
                    }
                }
                state = Some(next);
            }
        }
    }
    // The loop always returns; this keeps the fail-closed answer explicit if it ever changes.
    ffi::PAM_AUTH_ERR
}

/// The wall-clock time at which `exchange` gives up, for the daemon (same host, same clock).
fn deadline_ms(timeout: std::time::Duration) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from((now + timeout).as_millis()).unwrap_or(u64::MAX)
}

fn verdict_name(v: &CheckVerdict) -> &'static str {
    match v {
        CheckVerdict::Accept => "accept",
        CheckVerdict::Reject => "reject",
        CheckVerdict::Challenge { .. } => "challenge",
        CheckVerdict::Defer => "defer",
        CheckVerdict::Deny { .. } => "deny",
    }
}

fn acct_mgmt(pam: &Pam, flags: c_int, args: &Args) -> c_int {
    let who = match subject(pam, args) {
        Ok(s) => s,
        // Without a user there is nothing to allow.
        Err(_) => return ffi::PAM_PERM_DENIED,
    };
    let request = protocol::encode_account(&who.user, &who.service, who.rhost.as_deref());
    let line = match client::exchange(&args.socket, &request, args.timeout) {
        Ok(line) => line,
        Err(e) => {
            return unavailable(
                pam,
                args,
                &describe_timeout(args, &e),
                ffi::PAM_AUTHINFO_UNAVAIL,
            )
        }
    };
    let verdict = match protocol::parse_account(&line) {
        Ok(v) => v,
        Err(e) => return unavailable(pam, args, &e.to_string(), ffi::PAM_AUTHINFO_UNAVAIL),
    };
    if args.debug {
        let name = match &verdict {
            AccountAnswer::Allow => "allow",
            AccountAnswer::Deny { .. } => "deny",
            AccountAnswer::Ignore => "ignore",
        };
        pam.syslog(
            LOG_DEBUG,
            &format!(
                "account user={} service={} rhost={}: {name}",
                who.user,
                who.service,
                who.rhost.as_deref().unwrap_or("-")
            ),
        );
    }
    match verdict {
        AccountAnswer::Allow => ffi::PAM_SUCCESS,
        AccountAnswer::Ignore => ffi::PAM_IGNORE,
        AccountAnswer::Deny { message } => {
            if flags & ffi::PAM_SILENT == 0 && !message.is_empty() {
                pam.error_msg(&message);
            }
            ffi::PAM_PERM_DENIED
        }
    }
}

/// # Safety
/// Called by libpam with a valid handle and `argc` valid argument strings.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_authenticate(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    guard(ffi::PAM_SYSTEM_ERR, || {
        let pam = Pam::new(pamh);
        let args = load_args(&pam, argc, argv);
        authenticate(&pam, flags, &args)
    })
}

/// # Safety
/// Called by libpam with a valid handle and `argc` valid argument strings.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_acct_mgmt(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    guard(ffi::PAM_SYSTEM_ERR, || {
        let pam = Pam::new(pamh);
        let args = load_args(&pam, argc, argv);
        acct_mgmt(&pam, flags, &args)
    })
}

/// There are no credentials to set; success keeps `auth` stacks that call setcred working.
///
/// # Safety
/// Called by libpam; the arguments are not used.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_setcred(
    _pamh: *mut PamHandle,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    guard(ffi::PAM_SYSTEM_ERR, || ffi::PAM_SUCCESS)
}

/// Sessions are not ours; PAM_IGNORE lets the module sit in a `session` line harmlessly.
///
/// # Safety
/// Called by libpam; the arguments are not used.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_open_session(
    _pamh: *mut PamHandle,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    guard(ffi::PAM_SYSTEM_ERR, || ffi::PAM_IGNORE)
}

/// # Safety
/// Called by libpam; the arguments are not used.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_close_session(
    _pamh: *mut PamHandle,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    guard(ffi::PAM_SYSTEM_ERR, || ffi::PAM_IGNORE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_turns_a_panic_into_the_given_code() {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let rc = guard(ffi::PAM_SYSTEM_ERR, || panic!("boom"));
        std::panic::set_hook(prev);
        assert_eq!(rc, ffi::PAM_SYSTEM_ERR);
        assert_eq!(guard(ffi::PAM_SYSTEM_ERR, || 25), 25);
    }

    #[test]
    fn invalid_utf8_password_becomes_replacement_characters() {
        let s = secret_string(Zeroizing::new(vec![b'1', 0xff, b'2']));
        assert_eq!(s.as_str(), "1\u{fffd}2");
        let s = secret_string(Zeroizing::new(b"1234287082".to_vec()));
        assert_eq!(s.as_str(), "1234287082");
    }

    #[test]
    fn conversation_codes_are_kept() {
        assert_eq!(
            conv_or(ffi::PAM_CONV_ERR, ffi::PAM_AUTH_ERR),
            ffi::PAM_CONV_ERR
        );
        assert_eq!(
            conv_or(ffi::PAM_CONV_AGAIN, ffi::PAM_AUTH_ERR),
            ffi::PAM_INCOMPLETE
        );
        assert_eq!(conv_or(10, ffi::PAM_AUTH_ERR), ffi::PAM_AUTH_ERR);
    }
}
