//! The few libpam entry points the module needs, declared by hand.
//!
//! A bindings crate would pull in bindgen or a large surface for six functions; these
//! signatures are stable Linux-PAM ABI (security/pam_modules.h, security/pam_ext.h).

use std::os::raw::{c_char, c_int, c_void};

/// Opaque `pam_handle_t`; only ever used behind a pointer.
#[repr(C)]
pub struct PamHandle {
    _private: [u8; 0],
}

pub const PAM_SUCCESS: c_int = 0;
pub const PAM_SYSTEM_ERR: c_int = 4;
pub const PAM_BUF_ERR: c_int = 5;
pub const PAM_PERM_DENIED: c_int = 6;
pub const PAM_AUTH_ERR: c_int = 7;
pub const PAM_AUTHINFO_UNAVAIL: c_int = 9;
pub const PAM_CONV_ERR: c_int = 19;
pub const PAM_IGNORE: c_int = 25;
pub const PAM_CONV_AGAIN: c_int = 30;
pub const PAM_INCOMPLETE: c_int = 31;

pub const PAM_SERVICE: c_int = 1;
pub const PAM_RHOST: c_int = 4;
pub const PAM_AUTHTOK: c_int = 6;

pub const PAM_PROMPT_ECHO_OFF: c_int = 1;
pub const PAM_ERROR_MSG: c_int = 3;

pub const PAM_SILENT: c_int = 0x8000;

#[link(name = "pam")]
extern "C" {
    pub fn pam_get_user(
        pamh: *mut PamHandle,
        user: *mut *const c_char,
        prompt: *const c_char,
    ) -> c_int;
    pub fn pam_get_item(
        pamh: *const PamHandle,
        item_type: c_int,
        item: *mut *const c_void,
    ) -> c_int;
    pub fn pam_get_authtok(
        pamh: *mut PamHandle,
        item: c_int,
        authtok: *mut *const c_char,
        prompt: *const c_char,
    ) -> c_int;
    // Variadic: always called with the format "%s" so no text we pass is ever interpreted.
    pub fn pam_syslog(pamh: *const PamHandle, priority: c_int, fmt: *const c_char, ...);
    pub fn pam_prompt(
        pamh: *mut PamHandle,
        style: c_int,
        response: *mut *mut c_char,
        fmt: *const c_char,
        ...
    ) -> c_int;
}
