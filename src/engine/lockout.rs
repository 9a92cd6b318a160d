//! Progressive delay and lock after repeated failures.
//!
//! After `free_failures` failures in a row, each further attempt must wait a delay that doubles
//! per failure (capped); an attempt inside the delay is refused without looking at the code
//! (gate.rs holds the rest: slots, locks, familiar sources).

use crate::config::LockoutConfig;

/// Seconds an account must wait after its last failure, given its failure count.
pub fn delay_secs(failures: u32, cfg: &LockoutConfig) -> i64 {
    if failures < cfg.free_failures.max(1) {
        return 0;
    }
    let doublings = (failures - cfg.free_failures.max(1)).min(30);
    let d = cfg.delay.as_secs().saturating_mul(1u64 << doublings);
    d.min(cfg.max_delay.as_secs()) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_and_caps() {
        let c = LockoutConfig::default();
        assert_eq!(delay_secs(0, &c), 0);
        assert_eq!(delay_secs(2, &c), 0);
        assert_eq!(delay_secs(3, &c), 1);
        assert_eq!(delay_secs(4, &c), 2);
        assert_eq!(delay_secs(5, &c), 4);
        assert_eq!(delay_secs(40, &c), 60);
    }
}
