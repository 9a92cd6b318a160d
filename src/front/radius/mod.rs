//! The RADIUS front-end (RFC 2865 PAP, RFC 3579 Message-Authenticator, RFC 5997
//! Status-Server, RFC 5080 duplicate detection). Bytes in, `CheckRequest` to the engine,
//! `Decision` back out as a signed answer. docs/radius.md says what comes from the `radius`
//! crate and what is ours.
//!
//! | module | holds |
//! |---|---|
//! | `wire` | our own length checks of header and attributes, before the codec sees a byte |
//! | `message_authenticator` | HMAC-MD5 Message-Authenticator and the Response Authenticator |
//! | `attributes` | attributes read and written, through the `radius` crate's codec |
//! | `duplicates` | the bounded cache of answers for retransmissions |
//! | `clients` | `[[radius.clients]]` by source address |
//! | `server` | sockets, worker threads, bounded in-flight work |
//! | `per_source` | each source address's share of the validations in flight |
//! | `stats` | counters of what happened to datagrams, rate-limited log lines |
//! | `group` | datagrams taken together: one barrier, handed over undecided when one must sleep |
//! | `waiting` | the socket's receive buffer; datagrams already waiting, taken without sleeping |

pub mod attributes;
pub mod clients;
pub mod duplicates;
mod group;
pub mod message_authenticator;
mod per_source;
mod receivers;
pub mod server;
mod stats;
mod waiting;
pub mod wire;

pub use attributes::{Login, RequestInfo, Unusable};
pub use clients::{Client, Clients};
pub use server::{start, RadiusServer};
pub use stats::Stats;
pub use wire::Dropped;

use crate::engine::{messages, Decision, Verdict};
use ::radius::core::code::Code;
use wire::{ACCESS_REQUEST, STATUS_SERVER};

/// What Status-Server gets in its Reply-Message.
pub const STATUS_REPLY: &str = "otpd is up";

/// What to do with a datagram that passed every check.
#[derive(Debug)]
pub enum Step {
    /// Status-Server: send the answer.
    Status(Vec<u8>),
    /// An Access-Request otpd cannot check (CHAP, EAP, no User-Name...): send the
    /// Access-Reject and log why.
    Refused { answer: Vec<u8>, why: Unusable },
    /// A PAP login for the engine.
    Check(Box<Pending>),
}

#[derive(Debug)]
pub struct Pending {
    pub info: RequestInfo,
    pub login: Login,
}

/// Everything between the socket and the engine, without sockets, clocks or caches: length
/// checks, code, Message-Authenticator, decoding. Pure, so the fuzzer can drive it.
pub fn handle_datagram_bytes(datagram: &[u8], client: &Client) -> Result<Step, Dropped> {
    let checked = wire::check(datagram)?;
    if checked.code != ACCESS_REQUEST && checked.code != STATUS_SERVER {
        return Err(Dropped::UnknownCode(checked.code));
    }
    let secret = &client.secret;
    match checked.message_authenticator {
        Some(at) if !message_authenticator::verify(checked.packet, at, secret) => {
            return Err(Dropped::BadMessageAuthenticator);
        }
        Some(_) => {}
        // RFC 5997 §3: Status-Server always carries one.
        None if client.require_message_authenticator || checked.code == STATUS_SERVER => {
            return Err(Dropped::NoMessageAuthenticator);
        }
        None => {}
    }
    if checked.code == STATUS_SERVER {
        let info = attributes::read_status_server(&checked, secret.as_slice())?;
        let answer =
            attributes::encode_answer(Code::AccessAccept, &info, secret, Some(STATUS_REPLY), None)?;
        return Ok(Step::Status(answer));
    }
    let (info, login) =
        attributes::read_access_request(&checked, secret.as_slice(), client.source_attribute)?;
    match login {
        Ok(login) => Ok(Step::Check(Box::new(Pending { info, login }))),
        Err(why) => {
            let answer = attributes::encode_answer(
                Code::AccessReject,
                &info,
                secret,
                Some(why.message()),
                None,
            )?;
            Ok(Step::Refused { answer, why })
        }
    }
}

/// The engine's decision as a signed answer. RADIUS has no password stack behind it, so
/// Defer is an Access-Reject like Reject and Deny.
pub fn answer(info: &RequestInfo, d: &Decision, client: &Client) -> Result<Vec<u8>, Dropped> {
    let secret = &client.secret;
    let reject = |message: &str| {
        attributes::encode_answer(Code::AccessReject, info, secret, Some(message), None)
    };
    match d.verdict {
        Verdict::Accept => {
            attributes::encode_answer(Code::AccessAccept, info, secret, Some(&d.message), None)
        }
        Verdict::Challenge => match &d.state {
            Some(state) => attributes::encode_answer(
                Code::AccessChallenge,
                info,
                secret,
                Some(&d.message),
                Some(state.as_bytes()),
            ),
            None => reject(messages::REJECT),
        },
        Verdict::Defer => reject(messages::REJECT),
        Verdict::Reject | Verdict::Deny => reject(&d.message),
    }
}

#[cfg(test)]
mod tests;
