//! otpd library
