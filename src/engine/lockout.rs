//! Progressive delay and lock after repeated failures.
//!
//! After `free_failures` failures in a row, each further attempt must wait a delay that doubles
//! per failure (capped); an attempt inside the delay is refused without looking at the code, so
//! guessing in parallel gains nothing. At `max_failures` the account locks for
//! `lock_duration`, then clears by itself.

use crate::config::LockoutConfig;
use crate::model::Account;

/// Seconds an account must wait after its last failure, given its failure count.
pub fn delay_secs(failures: u32, cfg: &LockoutConfig) -> i64 {
    if failures < cfg.free_failures.max(1) {
        return 0;
    }
    let doublings = (failures - cfg.free_failures.max(1)).min(30);
    let d = cfg.delay.as_secs().saturating_mul(1u64 << doublings);
    d.min(cfg.max_delay.as_secs()) as i64
}

/// Why an attempt is refused before it is evaluated, if it is.
pub fn blocked(account: &Account, now: i64, cfg: &LockoutConfig) -> Option<String> {
    if let Some(until) = account.locked_until {
        if now < until {
            return Some(format!("account locked for {} s more", until - now));
        }
    }
    let wait = delay_secs(account.failures, cfg);
    if let Some(last) = account.last_failure {
        if wait > 0 && now < last + wait {
            return Some(format!(
                "throttled after {} failures: {} s to wait",
                account.failures,
                last + wait - now
            ));
        }
    }
    None
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
