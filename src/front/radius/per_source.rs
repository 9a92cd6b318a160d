//! Validations in flight per source address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Validations in flight per source address, so that one source (a flooding client, or
/// whoever forges its address) cannot hold every one of `max_in_flight`. An entry lives only
/// while that source has work in flight: at most `max_in_flight` of them.
pub(super) struct PerSource {
    pub(super) max: u32,
    pub(super) counts: Mutex<HashMap<IpAddr, u32>>,
}

/// One validation's share of its source; given back when dropped.
pub(super) struct SourceSlot {
    owner: Arc<PerSource>,
    ip: IpAddr,
}

impl PerSource {
    pub(super) fn try_take(self: &Arc<Self>, ip: IpAddr) -> Option<SourceSlot> {
        let mut m = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            owner: self.clone(),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut m = self.owner.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_cannot_take_more_than_its_share() {
        let ps = Arc::new(PerSource {
            max: 2,
            counts: Mutex::new(HashMap::new()),
        });
        let a: IpAddr = "127.0.0.2".parse().expect("ip");
        let b: IpAddr = "127.0.0.1".parse().expect("ip");
        let s1 = ps.try_take(a).expect("first");
        let s2 = ps.try_take(a).expect("second");
        assert!(ps.try_take(a).is_none(), "third from the same source");
        let other = ps.try_take(b).expect("another source still gets in");
        drop(s1);
        let s3 = ps.try_take(a).expect("a slot came back");
        drop((s2, s3, other));
        assert!(
            ps.counts.lock().expect("lock").is_empty(),
            "no entry outlives its work"
        );
    }
}
