//! What the management API may do, decided here: the HTTP front-end (front/http/api/)
//! authenticates nothing itself, sees no token and no store; it hands each request to a
//! [`Portal`] method with the [`Caller`] and translates the answer or the [`PortalError`].
//!
//! - Scopes: `read` reads, `portal` reads and changes one named account per request,
//!   `admin` also does what the CLI does for accounts (create, delete, unlock).
//! - Ownership: a token, app password or device is addressed under its account's name; one
//!   of another account is "not found", exactly like one that does not exist.
//! - Actions that weaken an account ([`Weakening`]) need, from a portal key, a fresh PIN+code
//!   in the same request, checked by the engine ([`Prover`]): behind the guessing gate, the
//!   code spent like every code. Admin keys are the helpdesk (the lost phone) and need none.
//! - Every call is audited with the key's name (service `api`), never with a secret.

mod accounts;
mod audit;
mod devices;
mod extras;
mod live;
mod tokens;
mod views;

pub use devices::Revoked;
pub use live::{LiveEngine, Portals};
pub use tokens::EnrolRequest;
pub use views::{
    AccountView, ActivityView, BackupSetView, BackupView, DeviceView, EnrolView,
    NewAppPasswordView, TokenView, UserSummary,
};

use super::{Admin, AdminError};
use crate::config::Requirement;
use crate::engine::{CheckRequest, Decision, Engine, Verdict, PROOF_SERVICE};
use crate::model::{Account, ApiKey, ApiScope, Token, TokenKind, TokenState};
use crate::store::StoreError;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Checks a fresh PIN+code: the engine in the daemon (through its reload handle), or an
/// engine directly in tests.
pub trait Prover: Send + Sync {
    fn prove(&self, req: &CheckRequest) -> Decision;
}

impl Prover for Engine {
    fn prove(&self, req: &CheckRequest) -> Decision {
        Engine::prove(self, req)
    }
}

/// Who is asking: the API key that was presented, and the peer's address for the audit.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key: ApiKey,
    pub peer: Option<String>,
}

impl Caller {
    fn client(&self) -> String {
        format!("api-key:{}", self.key.name)
    }
}

/// A fresh proof sent with a weakening action: PIN followed by a current code, as typed at
/// a login, and the end user's address (for the guessing gate's familiar sources).
pub struct Proof {
    pub password: Zeroizing<String>,
    pub rhost: Option<String>,
}

/// Why a call was not done. `code()` is stable (clients match on it); the message is for
/// people and never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("a valid API key is needed: Authorization: Bearer KEY")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    ProofRequired(String),
    #[error("the proof (PIN followed by a current code) was not accepted; nothing was changed")]
    ProofRefused,
    #[error("internal error; see the daemon's log")]
    Internal(String),
}

impl PortalError {
    pub fn code(&self) -> &'static str {
        match self {
            PortalError::Unauthorized => "unauthorized",
            PortalError::Forbidden(_) => "forbidden",
            PortalError::NotFound(_) => "not_found",
            PortalError::Invalid(_) => "invalid",
            PortalError::Conflict(_) => "conflict",
            PortalError::ProofRequired(_) => "proof_required",
            PortalError::ProofRefused => "proof_refused",
            PortalError::Internal(_) => "internal",
        }
    }

    /// The HTTP status that goes with [`PortalError::code`].
    pub fn status(&self) -> u16 {
        match self {
            PortalError::Unauthorized => 401,
            PortalError::Forbidden(_)
            | PortalError::ProofRequired(_)
            | PortalError::ProofRefused => 403,
            PortalError::NotFound(_) => 404,
            PortalError::Invalid(_) => 400,
            PortalError::Conflict(_) => 409,
            PortalError::Internal(_) => 500,
        }
    }
}

impl From<AdminError> for PortalError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Invalid(m) => PortalError::Invalid(m),
            AdminError::Refused(m) => PortalError::Conflict(m),
            AdminError::Store(StoreError::NotFound(m)) => {
                PortalError::NotFound(format!("{m} not found"))
            }
            AdminError::Store(StoreError::Exists(m)) => {
                PortalError::Conflict(format!("{m} already exists"))
            }
            AdminError::Store(e @ StoreError::LooksLike { .. }) => {
                PortalError::Conflict(e.to_string())
            }
            other => PortalError::Internal(other.to_string()),
        }
    }
}

pub type PortalResult<T> = Result<T, PortalError>;

/// What an operation needs of the caller's scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Read,
    Write,
    Admin,
}

/// The actions that weaken an account, and so need a fresh proof from a portal key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Weakening {
    /// Deleting or disabling the account's last active token (backup codes aside).
    LastToken,
    /// A level that asks less in some service class (deny > otp > app-password > password).
    LowerLevel,
    /// A new set of backup codes while the account has a second factor.
    NewBackupCodes,
    /// Ending every trusted device at once.
    RevokeAllDevices,
}

impl Weakening {
    fn why(self) -> &'static str {
        match self {
            Weakening::LastToken => "this is the account's last active token",
            Weakening::LowerLevel => "the new level asks less than the current one",
            Weakening::NewBackupCodes => "a new set of backup codes replaces the current one",
            Weakening::RevokeAllDevices => "all trusted devices would end",
        }
    }
}

pub struct Portal {
    admin: Admin,
    prover: Arc<dyn Prover>,
}

impl Portal {
    pub fn new(admin: Admin, prover: Arc<dyn Prover>) -> Portal {
        Portal { admin, prover }
    }

    /// The key a request presented (the bearer token), or `Unauthorized`.
    pub fn authenticate(&self, presented: &str, peer: Option<String>) -> PortalResult<Caller> {
        match self.admin.api_key_for(presented) {
            Ok(Some(key)) => Ok(Caller { key, peer }),
            Ok(None) => Err(PortalError::Unauthorized),
            Err(e) => Err(PortalError::Internal(e.to_string())),
        }
    }

    fn need(&self, caller: &Caller, need: Need) -> PortalResult<()> {
        let ok = match need {
            Need::Read => true,
            Need::Write => matches!(caller.key.scope, ApiScope::Admin | ApiScope::Portal),
            Need::Admin => caller.key.scope == ApiScope::Admin,
        };
        if ok {
            Ok(())
        } else {
            Err(PortalError::Forbidden(format!(
                "API key `{}` has scope {}, which does not allow this",
                caller.key.name,
                caller.key.scope.as_str()
            )))
        }
    }

    /// The named account, or `NotFound`; its expired enrolments go first.
    fn account(&self, user: &str) -> PortalResult<Account> {
        let name = self.admin.user_name(user)?;
        let Some(account) = self.admin.store.account(&name).map_err(AdminError::from)? else {
            return Err(PortalError::NotFound(format!("no user `{name}`")));
        };
        self.admin.purge_expired_enrolments(&account.name)?;
        Ok(account)
    }

    /// The account's token `serial`: one of another account is not found, as one that does
    /// not exist.
    fn own_token(&self, account: &Account, serial: &str) -> PortalResult<Token> {
        match self.admin.store.token(serial).map_err(AdminError::from)? {
            Some(t) if t.account_id == account.id => Ok(t),
            _ => Err(PortalError::NotFound(format!(
                "`{}` has no token `{serial}`",
                account.name
            ))),
        }
    }

    fn tokens_of(&self, account: &Account) -> PortalResult<Vec<Token>> {
        Ok(self
            .admin
            .store
            .tokens(Some(&account.name))
            .map_err(AdminError::from)?)
    }

    /// Whether the account keeps an active token other than backup codes without `gone`.
    fn keeps_second_factor(&self, account: &Account, gone: &str) -> PortalResult<bool> {
        Ok(self.tokens_of(account)?.iter().any(|t| {
            t.serial != gone && t.state == TokenState::Active && t.kind != TokenKind::Backup
        }))
    }

    fn has_active_token(&self, account: &Account) -> PortalResult<bool> {
        Ok(self
            .tokens_of(account)?
            .iter()
            .any(|t| t.state == TokenState::Active))
    }

    /// Whether `to` asks less than `from` in some service class.
    fn lowers(&self, from: &str, to: &str) -> bool {
        fn rank(r: Option<Requirement>) -> u8 {
            match r {
                Some(Requirement::Password) | None => 0,
                Some(Requirement::AppPassword) => 1,
                Some(Requirement::Otp) => 2,
                Some(Requirement::Deny) => 3,
            }
        }
        let cfg = &self.admin.cfg;
        cfg.services
            .keys()
            .any(|c| rank(cfg.requirement(to, c)) < rank(cfg.requirement(from, c)))
    }

    /// A weakening action from a portal key goes on only with a proof the engine accepts.
    fn require_proof(
        &self,
        caller: &Caller,
        account: &Account,
        what: Weakening,
        proof: Option<&Proof>,
    ) -> PortalResult<()> {
        if caller.key.scope == ApiScope::Admin {
            return Ok(());
        }
        let Some(proof) = proof else {
            return Err(PortalError::ProofRequired(format!(
                "{}: send \"proof\": {{\"password\": PIN followed by a current code}} with \
                 this request",
                what.why()
            )));
        };
        let req = CheckRequest {
            user: account.name.clone(),
            password: proof.password.clone(),
            service: PROOF_SERVICE.to_string(),
            rhost: proof.rhost.clone(),
            client: Some(caller.client()),
            ..CheckRequest::default()
        };
        match self.prover.prove(&req).verdict {
            Verdict::Accept => Ok(()),
            _ => Err(PortalError::ProofRefused),
        }
    }
}

#[cfg(test)]
mod tests;
