//! The token kinds, one file each, and the registry: the one list of them.
//!
//! Adding a kind: a file here implementing [`TokenClass`] (with its `TokenKind` constant) and
//! its line in `register!` below. Nothing else matches on kinds; the CLI builds
//! `otpd token add KIND` from [`TokenClass::options`]. See docs/tokens.md.

/// Declares each kind's module and lists its class in `CLASSES`, so that registering a kind
/// is one line and a module cannot be added without its class being listed (or the reverse).
macro_rules! register {
    ($($module:ident :: $class:ident),* $(,)?) => {
        $(pub mod $module;)*
        /// Every kind, once. The order is the order of `otpd token add --help`.
        static CLASSES: &[&dyn TokenClass] = &[$(&$module::$class),*];
    };
}

register! {
    totp::Totp,
    hotp::Hotp,
    yubikey::Yubikey,
    yubikey_remote::YubikeyRemote,
    motp::Motp,
    email::Email,
    backup::Backup,
}

/// What TOTP and HOTP share (not a kind of its own).
pub mod oath;

use super::TokenClass;
use crate::model::TokenKind;

/// Every registered kind's class.
pub fn classes() -> &'static [&'static dyn TokenClass] {
    CLASSES
}

/// The class of a kind. A `TokenKind` only comes from a kind's constant or from
/// [`TokenKind::parse`], so it is always registered; an unregistered one (a constant whose
/// line in `register!` was forgotten, which the registry's test catches) falls back to a class
/// that matches nothing.
pub fn class(kind: TokenKind) -> &'static dyn TokenClass {
    CLASSES
        .iter()
        .find(|c| c.kind() == kind)
        .copied()
        .unwrap_or(&Unregistered)
}

impl TokenKind {
    /// The registered kind of this name (as stored, as typed after `token add`).
    pub fn parse(s: &str) -> Option<TokenKind> {
        CLASSES.iter().map(|c| c.kind()).find(|k| k.as_str() == s)
    }

    /// The start of a new token's serial.
    pub fn serial_prefix(self) -> &'static str {
        class(self).serial_prefix()
    }
}

/// What an unregistered kind does: nothing matches, nothing is enrolled.
struct Unregistered;

impl TokenClass for Unregistered {
    fn kind(&self) -> TokenKind {
        TokenKind::named("unregistered")
    }
    fn about(&self) -> &'static str {
        "a kind missing from the registry"
    }
    fn serial_prefix(&self) -> &'static str {
        "X"
    }
    fn code_len(&self, _token: &crate::model::Token) -> usize {
        usize::MAX
    }
    fn check_shape(&self, _token: &crate::model::Token, _code: &str) -> Result<(), String> {
        Err("this token's kind is not known to this otpd".into())
    }
    fn check(
        &self,
        _sv: &super::Services<'_>,
        token: &crate::model::Token,
        _secret: &[u8],
        _code: &str,
        _now: i64,
    ) -> Result<super::Claim, super::Miss> {
        Err(Some(format!(
            "token {}: kind {} is not registered",
            token.serial, token.kind
        )))
    }
    fn options(&self) -> Option<&'static [super::Opt]> {
        None
    }
    fn describe(&self, _token: &crate::model::Token) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests;
