//! The daemon's own view of a window: its `/metrics` page read before and after the measured
//! seconds, and the difference of the series that say where its time went (logins, commits,
//! batch sizes, sampled CPU per phase).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Series kept: counters and histograms whose difference over a window means something.
const KEPT: [&str; 5] = [
    "otpd_requests_total",
    "otpd_request_duration_seconds_sum",
    "otpd_request_duration_seconds_count",
    "otpd_store_",
    "otpd_login_cpu_seconds",
];

/// `GET /metrics` from `addr`, parsed into series name (with labels) and value.
pub fn scrape(addr: SocketAddr) -> Result<BTreeMap<String, f64>, String> {
    let fail = |e: std::io::Error| format!("metrics endpoint {addr}: {e}");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(fail)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(fail)?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: otpd\r\nConnection: close\r\n\r\n")
        .map_err(fail)?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(fail)?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .ok_or_else(|| format!("metrics endpoint {addr}: no HTTP answer"))?;
    Ok(parse(body))
}

fn parse(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            KEPT.iter()
                .any(|k| name.starts_with(k))
                .then(|| Some((name.to_string(), value.parse().ok()?)))?
        })
        .collect()
}

/// What grew between two readings.
pub fn delta(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_the_series_of_the_time_split_and_takes_differences() {
        let a = super::parse(
            "# TYPE x counter\notpd_uptime_seconds 5\n\
             otpd_store_commit_batch_size_count 10\n\
             otpd_login_cpu_seconds_sum{phase=\"decide\"} 0.5\n",
        );
        assert_eq!(a.len(), 2, "{a:?}");
        let b = super::parse(
            "otpd_store_commit_batch_size_count 25\n\
             otpd_login_cpu_seconds_sum{phase=\"decide\"} 0.75\n",
        );
        let d = super::delta(&a, &b);
        assert_eq!(d["otpd_store_commit_batch_size_count"], 15.0);
        assert_eq!(d["otpd_login_cpu_seconds_sum{phase=\"decide\"}"], 0.25);
    }
}
