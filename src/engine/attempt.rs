//! One OTP login that the guessing gate let in: what its steps share (the re-login cache,
//! the two-step login, the PIN+code check), handed from step to step with its slot at the
//! gate, which counts its failure or gives the slot back when it is dropped.

use super::{gate, CheckRequest};
use crate::model::{Account, Token};

pub(super) struct Attempt<'a> {
    /// The normalised user name.
    pub(super) user: String,
    pub(super) account: &'a Account,
    /// The account's tokens, read with it.
    pub(super) tokens: &'a [Token],
    pub(super) class: &'a str,
    pub(super) req: &'a CheckRequest,
    pub(super) pass: gate::Pass<'a>,
}
