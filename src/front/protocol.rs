//! The socket's wire protocol (the `otpd-proto` crate, shared with the PAM module and the
//! CLI) and the one translation it needs from the engine: a decision into its wire verdict.

pub use otpd_proto::{
    codes, error_answer, parse, ping_answer, status_answer, ProtoError, Request, StatusAnswer,
    MAX_LINE, VERSION,
};

use crate::engine::{AccountVerdict, Decision, Verdict};

/// One response line: what the user may see. The reason (for the audit) never goes on the
/// wire.
pub fn check_answer(d: &Decision) -> Vec<u8> {
    let verdict = match d.verdict {
        Verdict::Accept => otpd_proto::Verdict::Accept,
        Verdict::Reject => otpd_proto::Verdict::Reject,
        Verdict::Challenge => otpd_proto::Verdict::Challenge,
        Verdict::Defer => otpd_proto::Verdict::Defer,
        Verdict::Deny => otpd_proto::Verdict::Deny,
    };
    otpd_proto::check_answer(verdict, &d.message, d.state.as_deref())
}

pub fn account_answer(v: AccountVerdict, message: &str) -> Vec<u8> {
    let v = match v {
        AccountVerdict::Allow => otpd_proto::AccountVerdict::Allow,
        AccountVerdict::Deny => otpd_proto::AccountVerdict::Deny,
        AccountVerdict::Ignore => otpd_proto::AccountVerdict::Ignore,
    };
    otpd_proto::account_answer(v, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_become_their_wire_verdicts_without_the_reason() {
        let a = check_answer(&Decision::reject("alice".into(), "wrong PIN"));
        let v: serde_json::Value = serde_json::from_slice(&a).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"verdict":"reject","message":"Login failed"})
        );
        let d = Decision::challenge("a".into(), "Code:", "s1".into(), "pin ok");
        let v: serde_json::Value = serde_json::from_slice(&check_answer(&d)).expect("json");
        assert_eq!(v["verdict"], "challenge");
        assert_eq!(v["state"], "s1");
        let v: serde_json::Value =
            serde_json::from_slice(&account_answer(AccountVerdict::Ignore, "")).expect("json");
        assert_eq!(v, serde_json::json!({"verdict":"ignore"}));
    }
}
