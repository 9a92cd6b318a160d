//! Attacks on the daemon's account cache, the same on both stores (tests/sqlite_cache.rs,
//! tests/postgres_cache.rs): `login` is the daemon that holds the account in memory, `admin`
//! the installation whose CLI changes it from another process (on PostgreSQL: another
//! node's), `sql` an admin's own SQL on the same database. Each change is followed at once
//! by a login on `login`, which must not be decided on the old data.

use super::{hotp_code, socket_call, Env};
use serde_json::{json, Value};

/// No lockout in the way of the rounds (their rejects are meant).
pub const NO_LOCKOUT: &str = "[lockout]\nfree_failures = 1000000\nmax_failures = 0\n\
    per_source_max_failures = 0\nsource_max_failures = 0\n";

pub fn check(env: &Env, user: &str, password: &str) -> Value {
    socket_call(
        &env.socket_path(),
        &json!({"op":"check","user":user,"password":password,"service":"vpn","client":"pam"}),
    )
}

pub fn verdict(env: &Env, user: &str, password: &str) -> String {
    check(env, user, password)["verdict"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

/// ann's token disabled 20 times, by the CLI and by SQL in turn, then deleted.
pub fn disabled_token(login: &Env, admin: &Env, sql: &dyn Fn(&str)) {
    let serial = login.enrol("ann", "1234", "hotp", "everywhere");
    let mut counter = 0u64;
    // The daemon reads ann once and keeps her.
    assert_eq!(
        verdict(login, "ann", &format!("1234{}", hotp_code(counter))),
        "accept"
    );
    counter += 1;
    for round in 0..20 {
        let pw = format!("1234{}", hotp_code(counter));
        if round % 2 == 0 {
            admin.ok(&["token", "disable", &serial], None);
        } else {
            sql(&format!(
                "UPDATE tokens SET state = 'disabled' WHERE serial = '{serial}'"
            ));
        }
        assert_eq!(
            verdict(login, "ann", &pw),
            "reject",
            "round {round}: disabled"
        );
        admin.ok(&["token", "enable", &serial], None);
        // The rejected code was not spent: enabled again, it is accepted at once.
        assert_eq!(
            verdict(login, "ann", &pw),
            "accept",
            "round {round}: enabled"
        );
        counter += 1;
    }
    admin.ok(&["token", "delete", &serial], None);
    let pw = format!("1234{}", hotp_code(counter));
    assert_eq!(verdict(login, "ann", &pw), "reject", "deleted");
}

/// bob's PIN changed ten times by the CLI, then his level switched off.
pub fn changed_pin_and_level(login: &Env, admin: &Env) {
    login.enrol("bob", "1234", "hotp", "everywhere");
    let mut counter = 0u64;
    let mut pin = "1234".to_string();
    assert_eq!(
        verdict(login, "bob", &format!("{pin}{}", hotp_code(counter))),
        "accept"
    );
    counter += 1;
    for round in 0..10 {
        let new_pin = format!("{}", 5000 + round);
        admin.ok(
            &["user", "set", "bob", "--pin-stdin"],
            Some(&format!("{new_pin}\n")),
        );
        let code = hotp_code(counter);
        assert_eq!(
            verdict(login, "bob", &format!("{pin}{code}")),
            "reject",
            "old PIN, round {round}"
        );
        assert_eq!(
            verdict(login, "bob", &format!("{new_pin}{code}")),
            "accept",
            "new PIN, round {round}"
        );
        pin = new_pin;
        counter += 1;
    }
    // Switched off by the level: a valid PIN and code are refused at once.
    admin.ok(&["user", "set", "bob", "--level", "off"], None);
    let code = hotp_code(counter);
    let v = check(login, "bob", &format!("{pin}{code}"));
    assert_ne!(v["verdict"], "accept", "{v}");
}
