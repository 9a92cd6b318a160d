//! Front-ends: protocol in, `CheckRequest` to the engine, `Decision` back out as bytes. The
//! daemon that starts and stops them is src/daemon/.

pub(crate) mod deferred;
pub mod http;
pub mod protocol;
pub mod radius;
pub mod socket;

#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    #[error("{0}")]
    Start(String),
}
