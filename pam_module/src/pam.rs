//! Safe wrappers around the libpam calls, confined to one place.

use crate::ffi::{self, PamHandle};
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};
use zeroize::{Zeroize, Zeroizing};

pub const LOG_ERR: c_int = libc::LOG_ERR;
pub const LOG_DEBUG: c_int = libc::LOG_DEBUG;

/// A borrowed PAM handle for the duration of one pam_sm_* call.
pub struct Pam {
    h: *mut PamHandle,
}

const FMT_S: &CStr = c"%s";

fn cstring_lossy(text: &str) -> CString {
    // Interior NULs would cut the text short; they can only come from daemon text or
    // configuration, never from secrets, so replacing them is harmless.
    CString::new(text.replace('\0', " ")).unwrap_or_default()
}

impl Pam {
    /// # Safety
    /// `h` must be the handle libpam passed to the current pam_sm_* call.
    pub unsafe fn new(h: *mut PamHandle) -> Self {
        Pam { h }
    }

    pub fn syslog(&self, priority: c_int, text: &str) {
        let msg = cstring_lossy(text);
        // SAFETY: valid handle; "%s" with one C string argument.
        unsafe { ffi::pam_syslog(self.h, priority, FMT_S.as_ptr(), msg.as_ptr()) }
    }

    /// The user name, asking through the conversation if the application did not set it.
    pub fn user(&self) -> Result<Vec<u8>, c_int> {
        let mut user: *const c_char = std::ptr::null();
        // SAFETY: valid handle and out pointer; the result is owned by libpam and copied.
        let rc = unsafe { ffi::pam_get_user(self.h, &mut user, std::ptr::null()) };
        if rc != ffi::PAM_SUCCESS {
            return Err(rc);
        }
        if user.is_null() {
            return Err(ffi::PAM_SYSTEM_ERR);
        }
        // SAFETY: libpam returns a NUL-terminated string that lives as long as the handle.
        Ok(unsafe { CStr::from_ptr(user) }.to_bytes().to_vec())
    }

    /// A string item (PAM_SERVICE, PAM_RHOST), None when unset.
    pub fn string_item(&self, item: c_int) -> Option<Vec<u8>> {
        self.raw_item(item)
            // SAFETY: string items are NUL-terminated C strings owned by libpam.
            .map(|p| unsafe { CStr::from_ptr(p) }.to_bytes().to_vec())
    }

    fn raw_item(&self, item: c_int) -> Option<*const c_char> {
        let mut value: *const c_void = std::ptr::null();
        // SAFETY: valid handle and out pointer.
        let rc = unsafe { ffi::pam_get_item(self.h, item, &mut value) };
        (rc == ffi::PAM_SUCCESS && !value.is_null()).then_some(value.cast())
    }

    /// PAM_AUTHTOK as an earlier module left it (use_first_pass), without prompting.
    pub fn authtok_item(&self) -> Option<Zeroizing<Vec<u8>>> {
        self.raw_item(ffi::PAM_AUTHTOK)
            // SAFETY: PAM_AUTHTOK is a NUL-terminated C string owned by libpam.
            .map(|p| Zeroizing::new(unsafe { CStr::from_ptr(p) }.to_bytes().to_vec()))
    }

    /// pam_get_authtok: the stored PAM_AUTHTOK if there is one (try_first_pass behaviour),
    /// otherwise a prompt whose answer libpam also stores for the modules after us.
    pub fn get_authtok(&self, prompt: Option<&str>) -> Result<Zeroizing<Vec<u8>>, c_int> {
        let prompt = prompt.map(cstring_lossy);
        let mut tok: *const c_char = std::ptr::null();
        // SAFETY: valid handle and out pointer; prompt lives across the call.
        let rc = unsafe {
            ffi::pam_get_authtok(
                self.h,
                ffi::PAM_AUTHTOK,
                &mut tok,
                prompt.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()),
            )
        };
        if rc != ffi::PAM_SUCCESS {
            return Err(rc);
        }
        if tok.is_null() {
            return Err(ffi::PAM_AUTH_ERR);
        }
        // SAFETY: NUL-terminated string owned by libpam (it stays PAM_AUTHTOK, which the
        // next module may need, so only our copy is wiped).
        Ok(Zeroizing::new(
            unsafe { CStr::from_ptr(tok) }.to_bytes().to_vec(),
        ))
    }

    /// Asks with echo off and returns the answer; the conversation's buffer is wiped.
    pub fn prompt_echo_off(&self, text: &str) -> Result<Zeroizing<Vec<u8>>, c_int> {
        let text = cstring_lossy(text);
        let mut resp: *mut c_char = std::ptr::null_mut();
        // SAFETY: valid handle and out pointer; "%s" with one C string argument.
        let rc = unsafe {
            ffi::pam_prompt(
                self.h,
                ffi::PAM_PROMPT_ECHO_OFF,
                &mut resp,
                FMT_S.as_ptr(),
                text.as_ptr(),
            )
        };
        let answer = if resp.is_null() {
            None
        } else {
            // SAFETY: the conversation returns a malloc'd NUL-terminated string that is now
            // ours: copy it, overwrite it, free it.
            unsafe {
                let len = CStr::from_ptr(resp).to_bytes().len();
                let bytes = std::slice::from_raw_parts_mut(resp.cast::<u8>(), len);
                let copy = Zeroizing::new(bytes.to_vec());
                bytes.zeroize();
                libc::free(resp.cast());
                Some(copy)
            }
        };
        match (rc, answer) {
            (ffi::PAM_SUCCESS, Some(a)) => Ok(a),
            (ffi::PAM_SUCCESS, None) => Err(ffi::PAM_CONV_ERR),
            (rc, _) => Err(rc),
        }
    }

    /// Shows an error message; a missing or failing conversation is not our problem here.
    pub fn error_msg(&self, text: &str) {
        let text = cstring_lossy(text);
        // SAFETY: valid handle; a NULL response pointer is allowed for messages.
        unsafe {
            ffi::pam_prompt(
                self.h,
                ffi::PAM_ERROR_MSG,
                std::ptr::null_mut(),
                FMT_S.as_ptr(),
                text.as_ptr(),
            );
        }
    }
}
