//! otpd: an OTP validation server for mail providers and Linux hosts.
//!
//! The engine decides, the front-ends translate, the store stores. See docs/architecture.md.
#![deny(clippy::unwrap_used)]

pub mod admin;
pub mod blocking;
pub mod cli;
pub mod config;
pub mod confusable;
pub mod crypto;
pub mod daemon;
pub mod engine;
pub mod front;
pub mod import;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod qr;
pub mod store;
pub mod tokens;
