//! The Prometheus endpoint of the real daemon: served on loopback, the right families,
//! nothing else answered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

fn http(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect metrics");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(request).expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    let port = common::free_tcp_port();
    let env = common::Env::new(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    let d = env.start();
    let page = http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("text/plain; version=0.0.4"), "{page}");
    for family in [
        "otpd_requests_total{frontend=\"radius\",verdict=\"accept\"}",
        "otpd_request_duration_seconds_bucket{frontend=\"socket\",le=\"+Inf\"}",
        "otpd_radius_dropped_total{reason=\"malformed\"}",
        "otpd_radius_duplicates_total",
        "otpd_relogin_cache_hits_total",
        "otpd_lockouts_total",
        "otpd_store_commit_duration_seconds_count",
        "otpd_store_commit_batch_size_count",
        "otpd_uptime_seconds",
    ] {
        assert!(page.contains(family), "missing {family} in\n{page}");
    }
    let other = http(port, b"GET /secrets HTTP/1.1\r\n\r\n");
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    let post = http(port, b"POST /metrics HTTP/1.1\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 10_000));
    let big = http(port, &huge);
    assert!(big.starts_with("HTTP/1.1 431"), "{big}");
    // Still serving after the odd requests.
    assert!(http(port, b"GET /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
    assert!(d.stop().success());
}

#[test]
fn metrics_endpoint_that_cannot_bind_stops_start_with_the_address_named() {
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("addr").port();
    let env = common::Env::new(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    let out = env.run(&["serve"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("metrics endpoint 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
