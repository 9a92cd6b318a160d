//! Timing of the trusted-device refusals (docs/security.md#trusted-devices): does the answer
//! time tell a wrong device token, a wrong PIN with a device token, another account's device
//! token or an unknown user with a device token from a wrong PIN+code? The engine in this
//! process on a real on-disk store, the kinds interleaved in random order, each login drawn
//! from 200 accounts (the lockout switched off, so that no refusal is a throttled one).
//!
//!   cargo run --release --example trusted_timing -- [SAMPLES]

use otpd::admin::{self, Admin, TokenOptions};
use otpd::config::Config;
use otpd::crypto::random_below;
use otpd::engine::{CheckRequest, DeviceRequest, Engine};
use otpd::model::TokenKind;
use otpd::tokens::oath::Algorithm;
use std::sync::Arc;
use std::time::Instant;

type Res<T> = Result<T, String>;

const PIN: &str = "4711";
const WRONG_PIN: &str = "0815";
const USERS: usize = 200;
const KINDS: [&str; 6] = [
    "wrong code",
    "device: unknown token",
    "device: wrong PIN",
    "device: another's token",
    "unknown user, code",
    "unknown user, device",
];

fn main() {
    let samples = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000usize);
    if let Err(e) = run(samples) {
        eprintln!("trusted_timing: {e}");
        std::process::exit(1);
    }
}

fn rnd(n: u32) -> Res<usize> {
    random_below(n)
        .map(|v| v as usize)
        .map_err(|e| e.to_string())
}

fn random_token() -> Res<String> {
    let mut b = [0u8; 32];
    otpd::crypto::fill_random(&mut b).map_err(|e| e.to_string())?;
    Ok(data_encoding::BASE64URL_NOPAD.encode(&b))
}

fn run(samples: usize) -> Res<()> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let text = format!(
        "data_dir = \"{}\"\nunknown_user = \"reject\"\n\
         [lockout]\nfree_failures = 1000000\nmax_failures = 0\n\
         per_source_max_failures = 0\nsource_max_failures = 0\n\
         [services.web]\ntrusted_device_ttl = \"30d\"\n[radius]\nlisten = []\n",
        dir.path().join("data").display()
    );
    let cfg = Arc::new(Config::from_toml_str(&text).map_err(|e| e.to_string())?);
    admin::init(&cfg).map_err(|e| e.to_string())?;
    let (store, keys) = admin::open(&cfg).map_err(|e| e.to_string())?;
    let a = Admin::new(cfg.clone(), store.clone(), keys.clone());
    for i in 0..=USERS {
        let user = format!("u{i:03}");
        a.add_user(&user, Some(PIN), None)
            .map_err(|e| e.to_string())?;
        let mut secret = [0u8; 20];
        otpd::crypto::fill_random(&mut secret).map_err(|e| e.to_string())?;
        a.add_token(
            &user,
            TokenOptions {
                kind: TokenKind::Hotp,
                secret_b32: Some(data_encoding::BASE32_NOPAD.encode(&secret).into()),
                digits: 6,
                algorithm: Algorithm::Sha1,
                period: 30,
                label: String::new(),
                active: true,
            },
        )
        .map_err(|e| e.to_string())?;
        a.set_user(&user, None, Some("everywhere"))
            .map_err(|e| e.to_string())?;
    }
    let engine = Engine::new(cfg.clone(), store.clone(), keys.clone());
    // One real device, of the account u200 that no sample logs in as.
    let secret_of_u200 = a.token_of_first("u200")?;
    let mut r = request("u200", &format!("{PIN}{secret_of_u200}"), None);
    r.device.remember = Some("laptop".into());
    let d = engine.check(&r);
    let foreign = d
        .device
        .map(|dev| dev.token.to_string())
        .ok_or_else(|| format!("no device trusted: {}", d.reason))?;

    let mut order: Vec<usize> = (0..samples * KINDS.len())
        .map(|i| i % KINDS.len())
        .collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rnd(i as u32 + 1)?);
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); KINDS.len()];
    let warmup = 200.min(order.len());
    for (n, &kind) in order.iter().enumerate() {
        let user = format!("u{:03}", rnd(USERS as u32)?);
        let nobody = format!("nobody{}", rnd(1_000_000)?);
        let code = format!("{:06}", rnd(1_000_000)?);
        let req = match kind {
            0 => request(&user, &format!("{PIN}{code}"), None),
            1 => request(&user, PIN, Some(random_token()?)),
            2 => request(&user, WRONG_PIN, Some(random_token()?)),
            3 => request(&user, PIN, Some(foreign.clone())),
            4 => request(&nobody, &format!("{PIN}{code}"), None),
            _ => request(&nobody, PIN, Some(random_token()?)),
        };
        let t = Instant::now();
        let d = engine.check(&req);
        let us = t.elapsed().as_secs_f64() * 1e6;
        if d.verdict.as_str() != "reject" {
            return Err(format!(
                "`{}` got {}: {}",
                KINDS[kind],
                d.verdict.as_str(),
                d.reason
            ));
        }
        if n >= warmup {
            times[kind].push(us);
        }
    }
    let med = |v: &mut Vec<f64>| -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let p90 = |v: &Vec<f64>| v.get(v.len() * 9 / 10).copied().unwrap_or(f64::NAN);
    let reference = med(&mut times[0]);
    println!("| kind | samples | median µs | p90 µs | median − wrong code |");
    println!("|---|---|---|---|---|");
    for (i, name) in KINDS.iter().enumerate() {
        let m = med(&mut times[i]);
        println!(
            "| {name} | {} | {m:.1} | {:.1} | {:+.1} |",
            times[i].len(),
            p90(&times[i]),
            m - reference
        );
    }
    Ok(())
}

fn request(user: &str, password: &str, token: Option<String>) -> CheckRequest {
    CheckRequest {
        user: user.into(),
        password: password.to_string().into(),
        service: "web".into(),
        client: Some("timing".into()),
        device: DeviceRequest {
            remember: None,
            token: token.map(Into::into),
        },
        ..CheckRequest::default()
    }
}

trait FirstCode {
    fn token_of_first(&self, user: &str) -> Res<String>;
}

impl FirstCode for Admin {
    /// The first HOTP code of the user's token (counter 0), read back from its sealed secret.
    fn token_of_first(&self, user: &str) -> Res<String> {
        let t = self
            .store
            .tokens(Some(user))
            .map_err(|e| e.to_string())?
            .into_iter()
            .next()
            .ok_or("no token")?;
        let secret = self
            .keys
            .open(t.serial.as_bytes(), &t.sealed_secret)
            .map_err(|e| e.to_string())?;
        Ok(otpd::tokens::oath::hotp(Algorithm::Sha1, &secret, 0, 6))
    }
}
