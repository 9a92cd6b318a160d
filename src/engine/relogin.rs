//! Webmail re-login cache. Roundcube logs in to IMAP again on every page view with what the
//! user typed, and a one-time code works once: without this cache the second page view fails.
//!
//! After an OTP Accept for a class with `relogin_cache = true`, the same (user, class, source
//! address, password) is accepted again until `relogin_idle` passes without a login or
//! `relogin_max` after the first one. What is held is only a keyed hash of those four (and of
//! the account's PIN hash, so a PIN change ends every entry), under a sub-key of the key
//! file's hash key: every node of a cluster names the same login the same (a page view may
//! reach another node than the login), while the database, memory dumps and swap give
//! nothing to brute-force without the key file. The entries are shared state
//! (store/shared/): this process's memory on a single host (a restart empties the cache), the
//! database with several nodes. Logins without a source address are never cached: "the same
//! source" is the whole safety argument.

use super::{Attempt, Commit, Decision, Engine, Verdict};
use crate::config::ServiceConfig;
use crate::crypto::Keys;
use crate::model::TokenState;
use crate::store::shared::{Key, ReloginEntry};
use crate::store::CommitMode;

/// The label of the sub-key that names re-login entries.
const LABEL: &[u8] = b"otpd v1 relogin cache";

/// The keyed hash naming one (user, class, rhost, PIN hash, password).
pub fn key_of(
    keys: &Keys,
    user: &str,
    class: &str,
    rhost: &str,
    pin_hash: &[u8],
    password: &str,
) -> Key {
    keys.shared_name(
        LABEL,
        &[
            user.as_bytes(),
            class.as_bytes(),
            rhost.as_bytes(),
            pin_hash,
            password.as_bytes(),
        ],
    )
}

fn entry<'a>(serial: &'a str, now_ms: i64, svc: &ServiceConfig) -> ReloginEntry<'a> {
    ReloginEntry {
        serial,
        now_ms,
        idle_ms: i64::try_from(svc.relogin_idle.as_millis()).unwrap_or(i64::MAX),
        max_ms: i64::try_from(svc.relogin_max.as_millis()).unwrap_or(i64::MAX),
    }
}

impl Engine {
    /// The OTP check with the re-login cache in front of it (for classes that have it on).
    pub(super) fn otp_with_relogin(&self, a: Attempt<'_>, commit: &mut Commit) -> Decision {
        let (class, req) = (a.class, a.req);
        let svc = self.cfg.services.get(class).filter(|s| s.relogin_cache);
        // A challenge answer is not what the user typed at the first login.
        let key = match (svc, req.rhost.as_deref(), &req.state) {
            (Some(_), Some(rhost), None) => Some(key_of(
                &self.keys,
                &a.user,
                class,
                rhost,
                a.account.pin_hash.as_deref().unwrap_or_default(),
                &req.password,
            )),
            _ => None,
        };
        let (Some(svc), Some(key)) = (svc, key) else {
            return self.check_otp_two_step(a, commit);
        };
        // An Accept here goes into the cache before the answer leaves: it must be final, so
        // this login waits for its commit (no deferred answer, engine/mod.rs).
        let commit = &mut Commit::new(CommitMode::Wait);
        let now_ms = self.clock.now_ms();
        // A store that does not answer is a miss: the full check decides.
        let found = self.shared.relogin_hit(&key, now_ms).unwrap_or_else(|e| {
            tracing::warn!("re-login cache not read: {e}");
            None
        });
        if let Some(hit) = found {
            // The token that made the first login must still be there and active: disabling
            // or deleting it ends its cached logins too. (`tokens` are this account's, read
            // for this login.)
            match a.tokens.iter().find(|t| t.serial == hit.serial) {
                Some(t) if t.state == TokenState::Active => {
                    crate::metrics::get().relogin_hit();
                    let mut d = Decision::accept(a.user, hit.serial);
                    let age_s = (now_ms - hit.created_ms).div_euclid(1000);
                    d.reason = format!("re-login cache (first login {age_s} s ago)");
                    return d;
                }
                _ => {
                    if let Err(e) = self.shared.relogin_forget(&key) {
                        tracing::warn!("re-login entry not dropped: {e}");
                    }
                }
            }
        }
        let d = self.check_otp_two_step(a, commit);
        if d.verdict == Verdict::Accept {
            if let Some(serial) = &d.serial {
                // The Accept stands either way; without the entry the next page view needs a
                // new code.
                if let Err(e) = self.shared.relogin_put(&key, entry(serial, now_ms, svc)) {
                    tracing::warn!("re-login entry not stored: {e}");
                }
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    fn key(k: &Keys, user: &str, class: &str, rhost: &str, pw: &str) -> Key {
        key_of(k, user, class, rhost, b"pinhash", pw)
    }

    #[test]
    fn every_part_of_the_key_matters() {
        let k = Keys::new(&MasterKey::from_bytes([7u8; 32]));
        let base = key(&k, "alice", "web", "192.0.2.10", "1234287082");
        assert_eq!(base, key(&k, "alice", "web", "192.0.2.10", "1234287082"));
        assert_ne!(base, key(&k, "bob", "web", "192.0.2.10", "1234287082"));
        assert_ne!(base, key(&k, "alice", "mail", "192.0.2.10", "1234287082"));
        assert_ne!(base, key(&k, "alice", "web", "192.0.2.11", "1234287082"));
        assert_ne!(base, key(&k, "alice", "web", "192.0.2.10", "1234287083"));
        assert_ne!(
            base,
            key_of(&k, "alice", "web", "192.0.2.10", b"other", "1234287082")
        );
        // Length prefixes keep shifted boundaries apart.
        assert_ne!(key(&k, "ab", "c", "x", "p"), key(&k, "a", "bc", "x", "p"));
        // Another node with the same key file names the same login the same (a page view
        // may reach another node); another key file names it differently.
        let same = Keys::new(&MasterKey::from_bytes([7u8; 32]));
        assert_eq!(base, key(&same, "alice", "web", "192.0.2.10", "1234287082"));
        let other = Keys::new(&MasterKey::from_bytes([8u8; 32]));
        assert_ne!(
            base,
            key(&other, "alice", "web", "192.0.2.10", "1234287082")
        );
    }
}
