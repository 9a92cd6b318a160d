//! The socket's pieces that need no peer: line reading, group lookup, log sampling.

use super::conn::{read_line, Line};
use super::file::group_id;
use super::protocol;
use super::LogSampler;
use tokio::io::BufReader;
use zeroize::Zeroizing;

#[tokio::test]
async fn lines_are_capped_and_split() {
    let data = b"{\"op\":\"ping\"}\nsecond".to_vec();
    let mut r = BufReader::with_capacity(4, &data[..]);
    let mut line = Zeroizing::new(Vec::new());
    assert!(matches!(
        read_line(&mut r, &mut line).await.expect("read"),
        Line::Full
    ));
    assert_eq!(&line[..], b"{\"op\":\"ping\"}");
    let mut line = Zeroizing::new(Vec::new());
    assert!(matches!(
        read_line(&mut r, &mut line).await.expect("read"),
        Line::Full
    ));
    assert_eq!(&line[..], b"second");
    let mut line = Zeroizing::new(Vec::new());
    assert!(matches!(
        read_line(&mut r, &mut line).await.expect("read"),
        Line::Eof
    ));

    let mut exact = vec![b'a'; protocol::MAX_LINE];
    exact.push(b'\n');
    let mut r = BufReader::new(&exact[..]);
    let mut line = Zeroizing::new(Vec::new());
    assert!(matches!(
        read_line(&mut r, &mut line).await.expect("read"),
        Line::Full
    ));
    assert_eq!(line.len(), protocol::MAX_LINE);

    let over = vec![b'a'; protocol::MAX_LINE + 1];
    let mut r = BufReader::new(&over[..]);
    let mut line = Zeroizing::new(Vec::new());
    assert!(matches!(
        read_line(&mut r, &mut line).await.expect("read"),
        Line::TooLong
    ));
    assert!(line.len() <= protocol::MAX_LINE);
}

#[test]
fn groups_resolve_or_fail_clearly() {
    assert_eq!(group_id("root").expect("root"), 0);
    assert_eq!(group_id("4242").expect("numeric"), 4242);
    let e = group_id("no-such-group-otpd").expect_err("unknown");
    assert!(e.to_string().contains("no such group"), "{e}");
}

#[test]
fn log_sampler_logs_first_ten_then_every_hundredth() {
    let t = LogSampler::default();
    let logged: Vec<u64> = (0..300).filter_map(|_| t.tick()).collect();
    assert_eq!(logged.len(), 13);
    assert_eq!(logged[10], 100);
}
