//! Tokens through the API: enrol any kind (pending until a first code), activate, list,
//! rename, disable, enable, delete, resync. Deleting or disabling the last active token
//! needs a proof from a portal key.

use super::views::{EnrolView, TokenView};
use super::{Caller, Need, Portal, PortalError, PortalResult, Proof, Weakening};
use crate::model::{TokenKind, TokenState};
use crate::tokens::{self, Options, Shown};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// `POST /users/{user}/tokens`: a kind, a label and the kind's options by name.
pub struct EnrolRequest {
    pub kind: String,
    pub label: String,
    /// Values may be secrets (an imported seed): wiped when dropped.
    pub options: BTreeMap<String, Zeroizing<String>>,
}

impl Portal {
    fn token_view(&self, t: &crate::model::Token) -> TokenView {
        let timeout = self.admin.cfg.enrol_timeout.as_secs() as i64;
        TokenView::of(t, self.activate_before(t, timeout))
    }

    /// `GET /users/{user}/tokens`.
    pub fn tokens(&self, c: &Caller, user: &str) -> PortalResult<Vec<TokenView>> {
        self.call(c, Some(user), "list tokens", Need::Read, || {
            let a = self.account(user)?;
            Ok(self
                .tokens_of(&a)?
                .iter()
                .map(|t| self.token_view(t))
                .collect())
        })
    }

    /// `GET /users/{user}/tokens/{serial}`.
    pub fn token(&self, c: &Caller, user: &str, serial: &str) -> PortalResult<TokenView> {
        self.call(
            c,
            Some(user),
            &format!("show token {serial}"),
            Need::Read,
            || {
                let a = self.account(user)?;
                Ok(self.token_view(&self.own_token(&a, serial)?))
            },
        )
    }

    /// The kind's options from the request: only names the kind declares, its defaults
    /// where none is given, its choices enforced.
    fn options(
        kind: TokenKind,
        given: &BTreeMap<String, Zeroizing<String>>,
    ) -> PortalResult<Options> {
        let Some(decl) = tokens::class(kind).options() else {
            return Err(PortalError::Invalid(format!(
                "a {kind} token is not enrolled this way (backup codes have their own endpoint)"
            )));
        };
        if let Some(unknown) = given.keys().find(|k| !decl.iter().any(|o| o.name == *k)) {
            let names: Vec<&str> = decl.iter().map(|o| o.name).collect();
            return Err(PortalError::Invalid(format!(
                "a {kind} token has no option `{unknown}`; its options: {}",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )));
        }
        let mut o = Options::default();
        for d in decl {
            let v = given.get(d.name).map(|v| v.as_str()).or(d.default);
            match v {
                Some(v) => {
                    if !d.choices.is_empty() && !d.choices.contains(&v) {
                        return Err(PortalError::Invalid(format!(
                            "option `{}`: one of {}",
                            d.name,
                            d.choices.join(", ")
                        )));
                    }
                    o.set(d.name, v);
                }
                None if d.required => {
                    return Err(PortalError::Invalid(format!(
                        "a {kind} token needs option `{}` ({})",
                        d.name, d.help
                    )))
                }
                None => {}
            }
        }
        Ok(o)
    }

    /// `POST /users/{user}/tokens`: a pending token and what the user needs to set it up,
    /// shown once. It becomes active with a first code ([`Portal::activate`]) before
    /// `enrol_timeout` runs out.
    pub fn enrol(&self, c: &Caller, user: &str, r: &EnrolRequest) -> PortalResult<EnrolView> {
        self.call(
            c,
            Some(user),
            &format!("enrol {}", r.kind),
            Need::Write,
            || {
                let a = self.account(user)?;
                let kind = TokenKind::parse(&r.kind).ok_or_else(|| {
                    let kinds: Vec<&str> = tokens::kinds::classes()
                        .iter()
                        .filter(|c| c.options().is_some())
                        .map(|c| c.kind().as_str())
                        .collect();
                    PortalError::Invalid(format!(
                        "unknown token type `{}`; types: {}",
                        r.kind,
                        kinds.join(", ")
                    ))
                })?;
                let opts = Self::options(kind, &r.options)?;
                let (token, shown) = self.admin.enrol(&a.name, kind, &opts, &r.label, false)?;
                let mut v = EnrolView {
                    token: self.token_view(&token),
                    otpauth_uri: None,
                    secret: None,
                    qr_svg: None,
                    qr_png: None,
                    code_sent_to: None,
                };
                match shown {
                    Shown::Secret { b32, uri } => {
                        let qr = |e: crate::qr::QrError| PortalError::Internal(e.to_string());
                        v.qr_svg = Some(Zeroizing::new(crate::qr::svg(&uri).map_err(qr)?));
                        v.qr_png = Some(Zeroizing::new(crate::qr::png_data_uri(&uri).map_err(qr)?));
                        v.secret = Some(Zeroizing::new(crate::admin::group4(&b32)));
                        v.otpauth_uri = Some(uri);
                    }
                    Shown::CodeSentTo(to) => v.code_sent_to = Some(to),
                    Shown::Nothing => {}
                }
                Ok(v)
            },
        )
    }

    /// `POST .../tokens/{serial}/activate`: "test before saving".
    pub fn activate(
        &self,
        c: &Caller,
        user: &str,
        serial: &str,
        code: &str,
    ) -> PortalResult<TokenView> {
        self.call(
            c,
            Some(user),
            &format!("activate {serial}"),
            Need::Write,
            || {
                let a = self.account(user)?;
                self.own_token(&a, serial)?;
                Ok(self.token_view(&self.admin.activate(serial, code)?))
            },
        )
    }

    /// `PUT .../tokens/{serial}/label`.
    pub fn rename(
        &self,
        c: &Caller,
        user: &str,
        serial: &str,
        label: &str,
    ) -> PortalResult<TokenView> {
        self.call(
            c,
            Some(user),
            &format!("rename {serial}"),
            Need::Write,
            || {
                let a = self.account(user)?;
                self.own_token(&a, serial)?;
                let label = label.trim();
                if label.chars().count() > 64 || label.chars().any(char::is_control) {
                    return Err(PortalError::Invalid(
                        "label: at most 64 printable characters".into(),
                    ));
                }
                self.admin
                    .store
                    .set_token_label(serial, label)
                    .map_err(crate::admin::AdminError::from)?;
                Ok(self.token_view(&self.admin.token(serial)?))
            },
        )
    }

    /// `POST .../tokens/{serial}/enable` and `.../disable`.
    pub fn set_enabled(
        &self,
        c: &Caller,
        user: &str,
        serial: &str,
        enabled: bool,
        proof: Option<&Proof>,
    ) -> PortalResult<TokenView> {
        let action = if enabled { "enable" } else { "disable" };
        self.call(
            c,
            Some(user),
            &format!("{action} {serial}"),
            Need::Write,
            || {
                let a = self.account(user)?;
                let t = self.own_token(&a, serial)?;
                let state = if enabled {
                    TokenState::Active
                } else {
                    if t.state == TokenState::Active && !self.keeps_second_factor(&a, serial)? {
                        self.require_proof(c, &a, Weakening::LastToken, proof)?;
                    }
                    TokenState::Disabled
                };
                Ok(self.token_view(&self.admin.set_token_state(serial, state)?))
            },
        )
    }

    /// `DELETE .../tokens/{serial}`.
    pub fn delete_token(
        &self,
        c: &Caller,
        user: &str,
        serial: &str,
        proof: Option<&Proof>,
    ) -> PortalResult<()> {
        self.call(
            c,
            Some(user),
            &format!("delete {serial}"),
            Need::Write,
            || {
                let a = self.account(user)?;
                let t = self.own_token(&a, serial)?;
                if t.state == TokenState::Active && !self.keeps_second_factor(&a, serial)? {
                    self.require_proof(c, &a, Weakening::LastToken, proof)?;
                }
                Ok(self.admin.delete_token(serial)?)
            },
        )
    }

    /// `POST .../tokens/{serial}/resync`: two consecutive codes.
    pub fn resync(
        &self,
        c: &Caller,
        user: &str,
        serial: &str,
        code1: &str,
        code2: &str,
    ) -> PortalResult<TokenView> {
        self.call(
            c,
            Some(user),
            &format!("resync {serial}"),
            Need::Write,
            || {
                let a = self.account(user)?;
                self.own_token(&a, serial)?;
                Ok(self.token_view(&self.admin.resync(serial, code1, code2)?))
            },
        )
    }
}
