//! The PIN+code check itself: every active token tried in full (so the time does not say which
//! part was wrong), then the winner's code made to stick.

use super::{Attempt, Commit, Decision, Engine};
use crate::model::{Token, TokenState};
use crate::store::CommitMode;
use crate::tokens::{self, Matcher, Redeemed};

impl Engine {
    /// `tokens` are the account's, read once per login by the caller (challenge.rs): a second
    /// query would cost every login a few more page reads.
    pub(super) fn check_otp(&self, a: Attempt<'_>, commit: &mut Commit) -> Decision {
        let Attempt {
            user,
            account,
            tokens,
            req,
            pass,
            ..
        } = a;
        let now_ms = self.clock.now_ms();
        let now = now_ms.div_euclid(1000);
        let rhost = req.rhost.as_deref();
        let active: Vec<&Token> = tokens
            .iter()
            .filter(|t| t.state == TokenState::Active)
            .collect();
        if active.is_empty() {
            // Not counted (there is nothing to guess). Without the write it came about 300
            // µs sooner and told that the account exists without a usable token.
            return self.reject_as_unknown_users_are(user, &req.password, "no active token", None);
        }
        let password = req.password.as_str();
        let matcher = Matcher::new(&self.cfg, self.store.as_ref(), &self.keys, &self.ports);
        let mut pin_seen_ok = false;
        let mut hit = None;
        let mut detail: Option<String> = None;
        // Every token is tried in full, whatever matched before, so the time does not depend
        // on which part of the password was wrong. Each kind says where its code starts.
        for token in &active {
            let parts = if req.code_only {
                tokens::code_alone(password, token).map(|code| ("", code))
            } else {
                tokens::split(password, token)
            };
            let Some((pin, code)) = parts else {
                continue;
            };
            // A code-only client (`pin = "none"`) checked the user's own password itself.
            let pin_ok = req.code_only
                || match (&account.pin_salt, &account.pin_hash) {
                    (Some(salt), Some(hash)) => self.keys.verify_hash(salt, pin.as_bytes(), hash),
                    _ => false,
                };
            pin_seen_ok |= pin_ok;
            let result = matcher.check(token, code, now);
            if pin_ok {
                match result {
                    Ok(claim) if hit.is_none() => hit = Some((token, claim)),
                    Err(Some(why)) if detail.is_none() => detail = Some(why),
                    _ => {}
                }
            }
        }
        let Some((token, claim)) = hit else {
            let why = if !account.has_pin && !req.code_only {
                "account has no PIN".to_string()
            } else if pin_seen_ok {
                detail.unwrap_or_else(|| "wrong or used code".to_string())
            } else {
                "wrong PIN".to_string()
            };
            return self.failed(user, account, rhost, now, &why, pass);
        };
        let note = match matcher.redeem(token, &claim, now, false, commit.mode) {
            Ok(Redeemed::Won(note)) => note,
            // Decided as if won; the ticket tells the caller later whether it did (mod.rs
            // `check_deferrable`). A login redeems once, so what follows waits.
            Ok(Redeemed::Pending(ticket)) => {
                commit.ticket = Some(ticket);
                commit.mode = CommitMode::Wait;
                "ok".to_string()
            }
            // Another request used this code (or a later one) first: a replay or a race.
            Ok(Redeemed::Lost) => {
                return Decision::reject(user, "code already used").serial(token.serial.clone())
            }
            Err(e) => return Decision::reject(user, format!("store error: {e}")),
        };
        self.succeeded(pass, account, rhost, &user);
        let mut d = Decision::accept(user, token.serial.clone());
        d.reason = note;
        d
    }
}
