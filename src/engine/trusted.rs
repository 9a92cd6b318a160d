//! Trusted devices ("trust this browser for 30 days"). After an accepted PIN+code in a class
//! whose `trusted_device_ttl` is set, a client that asks (`DeviceRequest::remember`) gets a
//! device token once: 256 random bits, of which the store keeps only a keyed hash. A later
//! login of the same account, through the same client, in the same class, with the PIN alone
//! and that token is accepted without a code until the device expires or is revoked.
//!
//! The PIN alone with a device token is an attempt like any other: it passes the guessing
//! gate first (engine/guessing.rs), and a wrong PIN or an unknown, foreign, expired or revoked
//! token is a counted failure. It also pays what a wrong code costs (`imitate`), so a refused
//! device answers no sooner than a wrong PIN+code.
//!
//! A device remembers, as a keyed hash, the account's level, PIN hash and active tokens when
//! it was trusted: a change of any of them, by whatever path, ends it at its next use (and the
//! administration deletes the rows at once, admin/devices.rs).

use super::{Attempt, Commit, Decision, Engine, IssuedDevice, Verdict};
use crate::crypto;
use crate::model::{Account, Token, TokenState};
use crate::store::{CommitMode, NewDevice, TrustedDevice};
use zeroize::Zeroizing;

/// Fixed "salts" of the two keyed hashes: they only keep the two uses (and the PINs' and app
/// passwords' hashes) apart; the device token's 256 bits need no salt of their own.
const TOKEN_LABEL: &[u8] = b"otpd trusted device token v1";
const BINDING_LABEL: &[u8] = b"otpd trusted device binding v1";
const TOKEN_BYTES: usize = 32;
/// Devices kept per account; the least recently used go first. Bounds what one stolen
/// PIN+code can pile up, and what the user has to read in `device list`.
pub const MAX_PER_ACCOUNT: usize = 20;
pub const MAX_LABEL_CHARS: usize = 64;
/// A use is written at most this often per device.
const TOUCH_EVERY_S: i64 = 60;

/// What looking up a device token found.
type Found = Result<Option<TrustedDevice>, String>;

impl Engine {
    /// The OTP requirement with trusted devices around it: a device token with the PIN alone
    /// goes to [`Engine::check_trusted`]; a login asking to be remembered waits for its
    /// commit and, once accepted, gets its device token; anything else goes on as before.
    pub(super) fn otp_or_trusted(&self, a: Attempt<'_>, commit: &mut Commit) -> Decision {
        let req = a.req;
        // A client that checks the user's password itself sends the code alone (`code_only`):
        // there is no PIN here for a device to stand beside, so devices are neither used nor
        // made through it.
        if req.code_only {
            let mut d = self.otp_with_relogin(a, commit);
            if d.verdict == Verdict::Accept && req.device.remember.is_some() {
                d.reason = format!(
                    "{}; device not trusted: the client sends the code alone (pin = none)",
                    d.reason
                );
            }
            return d;
        }
        if let (Some(token), None) = (&req.device.token, &req.state) {
            // Looked up whatever the PIN turns out to be: a wrong PIN costs the same lookup.
            let found = self.find_device(token);
            let pin_alone = match (&a.account.pin_salt, &a.account.pin_hash) {
                (Some(salt), Some(hash)) => {
                    self.keys.verify_hash(salt, req.password.as_bytes(), hash)
                }
                _ => false,
            };
            if pin_alone {
                return self.check_trusted(a, found);
            }
            // Not the PIN alone: a client that sends its device token with every login may
            // carry a PIN+code; it is checked as one (and a wrong one counted as one).
        }
        let Some(label) = req.device.remember.as_deref() else {
            return self.otp_with_relogin(a, commit);
        };
        let (account, class) = (a.account, a.class);
        let binding = self.binding(account, a.tokens);
        // The device token goes out with the Accept, so the Accept must be final first: no
        // deferred answer, and no re-login cache hit (that is not a PIN+code).
        let commit = &mut Commit::new(CommitMode::Wait);
        let d = self.check_otp_two_step(a, commit);
        if d.verdict != Verdict::Accept {
            return d;
        }
        self.trust_device(d, account, class, req.client.as_deref(), label, &binding)
    }

    fn find_device(&self, token: &str) -> Found {
        let hash = self.keys.keyed_hash(TOKEN_LABEL, token.trim().as_bytes());
        match self.store.devices() {
            None => Err("this store keeps no trusted devices".to_string()),
            Some(s) => s
                .device_by_hash(&hash)
                .map_err(|e| format!("store error: {e}")),
        }
    }

    /// The PIN was right; the device token decides.
    fn check_trusted(&self, a: Attempt<'_>, found: Found) -> Decision {
        let Attempt {
            user,
            account,
            tokens,
            class,
            req,
            pass,
        } = a;
        let now = self.clock.now_ms().div_euclid(1000);
        let rhost = req.rhost.as_deref();
        // What checking a wrong PIN+code costs, thrown away: a refused device must answer no
        // sooner than a wrong code, or the time would tell that the PIN was right.
        self.imitate(Some(account), tokens, &req.password, now);
        let binding = self.binding(account, tokens);
        let device = match found {
            Ok(Some(d)) => {
                self.device_fits(d, account, class, req.client.as_deref(), &binding, now)
            }
            Ok(None) => Err("device token not recognised".to_string()),
            Err(e) => Err(e),
        };
        let device = match device {
            Ok(d) => d,
            Err(why) => {
                let why = format!("PIN with a trusted device token: {why}");
                return self.failed(user, account, rhost, now, &why, pass);
            }
        };
        self.succeeded(pass, account, rhost, &user);
        if device.last_used_at.is_none_or(|t| now - t >= TOUCH_EVERY_S) {
            if let Some(Err(e)) = self.store.devices().map(|s| s.touch_device(device.id, now)) {
                tracing::warn!("trusted device last use not recorded: {e}");
            }
        }
        let mut d = Decision::accept(user, String::new());
        d.serial = None;
        d.reason = format!(
            "trusted device \"{}\" (id {}) with the PIN alone",
            device.label, device.id
        );
        d
    }

    /// The device may log this login in: the same account, class and client, not expired,
    /// and the account unchanged since it was trusted. Each refusal says why (the audit).
    fn device_fits(
        &self,
        d: TrustedDevice,
        account: &Account,
        class: &str,
        client: Option<&str>,
        binding: &[u8],
        now: i64,
    ) -> Result<TrustedDevice, String> {
        if d.account_id != account.id {
            return Err("the device token belongs to another account".to_string());
        }
        if d.class != class {
            return Err(format!(
                "trusted device \"{}\" was trusted for {}, not {class}",
                d.label, d.class
            ));
        }
        if d.client.as_deref() != client {
            return Err(format!(
                "trusted device \"{}\" was trusted through client {}, not {}",
                d.label,
                d.client.as_deref().unwrap_or("-"),
                client.unwrap_or("-")
            ));
        }
        let ttl = self.ttl_secs(class);
        if ttl == 0 {
            return Err(format!(
                "{class} no longer allows trusted devices (trusted_device_ttl)"
            ));
        }
        // A lifetime shortened in the configuration shortens the devices made before.
        if d.expires_at.min(d.created_at.saturating_add(ttl)) <= now {
            return Err(format!("trusted device \"{}\" expired", d.label));
        }
        if !crypto::ct_eq(&d.binding, binding) {
            if let Some(Err(e)) = self.store.devices().map(|s| s.delete_devices(account.id)) {
                tracing::warn!("trusted devices not deleted: {e}");
            }
            return Err(format!(
                "trusted device \"{}\" ended: the account's level, PIN or tokens changed since",
                d.label
            ));
        }
        Ok(d)
    }

    fn ttl_secs(&self, class: &str) -> i64 {
        self.cfg
            .services
            .get(class)
            .map_or(0, |s| s.trusted_device_ttl.as_secs() as i64)
    }

    /// A keyed hash of what must not change while a device is trusted: the account's level,
    /// its PIN hash and the serials of its active tokens.
    fn binding(&self, account: &Account, tokens: &[Token]) -> [u8; crypto::HASH_LEN] {
        let mut serials: Vec<&str> = tokens
            .iter()
            .filter(|t| t.state == TokenState::Active)
            .map(|t| t.serial.as_str())
            .collect();
        serials.sort_unstable();
        let mut data = Vec::new();
        let pin = account.pin_hash.as_deref().unwrap_or_default();
        // Length prefixes: no two different accounts' states give the same bytes.
        for part in [account.level.as_bytes(), pin]
            .into_iter()
            .chain(serials.iter().map(|s| s.as_bytes()))
        {
            data.extend_from_slice(&(part.len() as u32).to_be_bytes());
            data.extend_from_slice(part);
        }
        self.keys.keyed_hash(BINDING_LABEL, &data)
    }

    /// After an accepted PIN+code: trusts the device if the class allows it, and puts its
    /// token in the answer. The Accept stands whatever happens here; the reason says it.
    fn trust_device(
        &self,
        mut d: Decision,
        account: &Account,
        class: &str,
        client: Option<&str>,
        label: &str,
        binding: &[u8],
    ) -> Decision {
        let ttl = self.ttl_secs(class);
        let not = |d: &mut Decision, why: String| {
            d.reason = format!("{}; device not trusted: {why}", d.reason);
        };
        if ttl == 0 {
            not(&mut d, format!("{class} allows no trusted devices"));
            return d;
        }
        let Some(store) = self.store.devices() else {
            not(&mut d, "this store keeps no trusted devices".to_string());
            return d;
        };
        let mut raw = Zeroizing::new([0u8; TOKEN_BYTES]);
        if let Err(e) = crypto::fill_random(raw.as_mut()) {
            not(&mut d, e.to_string());
            return d;
        }
        let token = Zeroizing::new(data_encoding::BASE64URL_NOPAD.encode(raw.as_ref()));
        let hash = self.keys.keyed_hash(TOKEN_LABEL, token.as_bytes());
        let label = clean_label(label);
        let now = self.clock.now_ms().div_euclid(1000);
        let expires_at = now.saturating_add(ttl);
        let new = NewDevice {
            account_id: account.id,
            client,
            class,
            label: &label,
            hash: &hash,
            binding,
            created_at: now,
            expires_at,
        };
        match store.insert_device(&new, MAX_PER_ACCOUNT) {
            Ok(id) => {
                d.reason = format!(
                    "{}; device \"{label}\" trusted (id {id}) for {} days",
                    d.reason,
                    ttl / 86_400
                );
                d.device = Some(IssuedDevice {
                    id,
                    label,
                    token,
                    expires_at,
                });
            }
            Err(e) => not(&mut d, format!("store error: {e}")),
        }
        d
    }

    /// The lookup a device token's login makes, for an unknown user's login that brings
    /// one (equal_time.rs): it must cost what a known account's does.
    pub(super) fn imitate_device_lookup(&self, token: &str) {
        let _ = self.find_device(token);
    }
}

/// What a label may be: printable, at most 64 characters, "device" when nothing is left.
pub fn clean_label(raw: &str) -> String {
    let s: String = raw
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_LABEL_CHARS)
        .collect();
    let s = s.trim();
    if s.is_empty() {
        "device".to_string()
    } else {
        s.to_string()
    }
}
