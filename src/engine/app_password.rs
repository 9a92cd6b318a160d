//! App-specific passwords: what a mail client uses once the account's level asks for more than
//! the normal password. One is used alone, without PIN, and only for the classes it was made
//! for. Each is a random 20-character string (about 99 bits), stored as a keyed hash.

use super::{gate, CheckRequest, Decision, Engine};
use crate::model::Account;
use zeroize::Zeroizing;

/// A use is written to the store at most this often per password (and whenever the source
/// changes): mail clients log in constantly, and each write is a durable commit.
const TOUCH_EVERY_S: i64 = 60;

/// What is hashed: the password as generated, whatever grouping the user typed. Spaces and
/// dashes are dropped and letters lower-cased, so `abcd-efgh-...`, `abcd efgh ...` and
/// `ABCDEFGH...` are one password.
pub fn normalize(typed: &str) -> Zeroizing<String> {
    Zeroizing::new(
        typed
            .chars()
            .filter(|c| *c != ' ' && *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect(),
    )
}

impl Engine {
    pub(super) fn check_app_password(
        &self,
        user: String,
        account: &Account,
        class: &str,
        req: &CheckRequest,
        // Held while the passwords are compared; a wrong app password is not counted (below)
        // and a right one does not forgive PIN guesses (a mail client polling every minute
        // would reset the count for a guesser just as often).
        _pass: gate::Pass<'_>,
    ) -> Decision {
        let list = match self.store.app_passwords(account.id) {
            Ok(l) => l,
            Err(e) => return Decision::reject(user, format!("store error: {e}")),
        };
        let typed = normalize(&req.password);
        let mut hit = None;
        let mut other_class = None;
        // Every password is hashed whatever matched before, so the time does not tell which
        // one (or whether one) matched.
        for ap in &list {
            let ok = self.keys.verify_hash(&ap.salt, typed.as_bytes(), &ap.hash);
            if ok && ap.allows(class) && hit.is_none() {
                hit = Some(ap);
            } else if ok && other_class.is_none() {
                other_class = Some(ap);
            }
        }
        if list.is_empty() {
            // The same work as one comparison.
            let _ = self
                .keys
                .verify_hash(&[0u8; 16], typed.as_bytes(), &[0u8; 32]);
        }
        let Some(ap) = hit else {
            let why = match other_class {
                Some(ap) => format!(
                    "app password \"{}\" (id {}) is not for {class} (only {})",
                    ap.label,
                    ap.id,
                    ap.services.join(", ")
                ),
                None if list.is_empty() => {
                    format!("{class} needs an app password and the account has none")
                }
                None => format!("{class} needs an app password; none matches"),
            };
            // Not counted as a failure: a 99-bit random password cannot be guessed, and a
            // revoked one left in a mail client that polls every minute must not lock the
            // user out of the services that need PIN+OTP.
            let now = self.clock.now_ms().div_euclid(1000);
            return self.reject_uncounted(user, &why, now, Some(account.id));
        };
        let now = self.clock.now_ms().div_euclid(1000);
        let from = req.rhost.as_deref().or(req.client.as_deref());
        let due = ap.last_used_at.is_none_or(|t| now - t >= TOUCH_EVERY_S)
            || ap.last_used_from.as_deref() != from;
        if due {
            if let Err(e) = self.store.touch_app_password(ap.id, now, from) {
                tracing::warn!("app password last use not recorded: {e}");
            }
        }
        let mut d = Decision::accept(user, String::new());
        d.serial = None;
        d.reason = format!("app password \"{}\" (id {})", ap.label, ap.id);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_and_case_do_not_matter() {
        assert_eq!(
            normalize("abcd-efgh-jkmn").as_str(),
            normalize("ABCD EFGH JKMN").as_str()
        );
        assert_eq!(normalize("ab cd-EF").as_str(), "abcdef");
    }
}
