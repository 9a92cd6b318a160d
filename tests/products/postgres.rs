//! PostgreSQL from Debian's packages for the tests of several otpd nodes on one database: a
//! primary, optionally a standby that streams from it (synchronous or not), promotion and
//! the hard kill of a failover. Everything runs in a private directory on 127.0.0.1 with free
//! ports; what a cluster started is stopped by `pg_ctl` on its own data directory when it is
//! dropped, also when a test fails half-way.
//!
//! The server refuses to run as root, so as root every PostgreSQL program runs as the
//! `postgres` user (runuser) in a directory that user owns. Authentication is `trust` on
//! 127.0.0.1 and the private socket directory only.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The database the clusters create for otpd (`Cluster::url`).
pub const DB: &str = "otpd";

/// How a standby follows the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replication {
    /// `synchronous_standby_names = 's1'`: a commit returns once the standby has it.
    Sync,
    /// The standby streams, but a commit does not wait for it: a failover can lose commits.
    Async,
}

/// The directory with initdb, pg_ctl, pg_basebackup, psql of the newest installed major
/// version. Fails (never skips) naming the package when PostgreSQL is not installed.
pub fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is missing (no /usr/lib/postgresql/*/bin/initdb): install it with \
             `apt-get install -y postgresql` (Debian 12: postgresql-15; tests/run.sh does this)"
        ),
    }
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A free TCP port on 127.0.0.1 (the listener is closed again before the server binds it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// A PostgreSQL program, as the postgres user when we are root.
fn pg_command(bin: &Path, program: &str) -> Command {
    let exe = bin.join(program);
    if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(exe);
        c
    } else {
        Command::new(exe)
    }
}

fn must(what: &str, out: std::io::Result<Output>) -> String {
    let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

/// One PostgreSQL server: its data directory, port and socket directory.
pub struct Node {
    pub name: String,
    pub data: PathBuf,
    pub port: u16,
    pub socket_dir: PathBuf,
    bin: PathBuf,
    running: bool,
}

impl Node {
    fn log_path(&self) -> PathBuf {
        self.data.with_extension("log")
    }

    /// The server's own log (startup failures, replication state, notices).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn start(&mut self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.socket_dir.display()
        );
        let out = pg_command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "60", "-o", &opts, "start"])
            .output();
        let out = out.unwrap_or_else(|e| panic!("pg_ctl start {}: {e}", self.name));
        assert!(
            out.status.success(),
            "pg_ctl start {} failed:\n{}{}\n--- server log:\n{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        self.running = true;
    }

    /// `pg_ctl stop` in the given mode: `immediate` is a crash (no checkpoint, no goodbye to
    /// clients or standbys), `fast` a clean shutdown.
    pub fn stop_mode(&mut self, mode: &str) {
        if !self.running {
            return;
        }
        must(
            &format!("pg_ctl stop -m {mode} {}", self.name),
            pg_command(&self.bin, "pg_ctl")
                .arg("-D")
                .arg(&self.data)
                .args(["-w", "-t", "60", "-m", mode, "stop"])
                .output(),
        );
        self.running = false;
    }

    /// The kill of a failover: `pg_ctl -m immediate`.
    pub fn kill(&mut self) {
        self.stop_mode("immediate");
    }

    /// A clean shutdown.
    pub fn stop(&mut self) {
        self.stop_mode("fast");
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Starts a node stopped by `stop`/`kill` again on the same port.
    pub fn restart(&mut self) {
        if !self.running {
            self.start();
        }
    }

    /// `psql` on database `db`: one statement or several separated by `;` (one transaction),
    /// answers as unaligned tuples (`|` between columns, one row a line). Fails the test on an error.
    pub fn sql_in(&self, db: &str, sql: &str) -> String {
        let (ok, text) = self.try_sql_in(db, sql);
        assert!(ok, "psql on {} ({db}) failed: {sql}\n{text}", self.name);
        text
    }

    /// `sql_in` on the otpd database.
    pub fn sql(&self, sql: &str) -> String {
        self.sql_in(DB, sql)
    }

    /// As `sql_in`, returning (success, output) instead of failing.
    pub fn try_sql_in(&self, db: &str, sql: &str) -> (bool, String) {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(sql)
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE")
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .unwrap_or_else(|e| panic!("psql: {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text.trim_end().to_string())
    }

    /// A libpq URL of database `db` on this node.
    pub fn url_of(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A libpq URL of the otpd database on this node.
    pub fn url(&self) -> String {
        self.url_of(DB)
    }

    /// Whether the node is a standby (in recovery).
    pub fn in_recovery(&self) -> bool {
        self.sql_in("postgres", "SELECT pg_is_in_recovery()") == "t"
    }
}

/// A primary and, optionally, one standby named `s1`, in a private directory.
pub struct Cluster {
    pub primary: Node,
    pub standby: Option<Node>,
    pub replication: Option<Replication>,
    /// The standby `rebuild_standby` made of the promoted one.
    pub rebuilt: Option<Node>,
    root: tempfile::TempDir,
}

impl Cluster {
    /// A primary alone, with the otpd database created.
    pub fn primary() -> Cluster {
        let bin = bin_dir();
        let root = tempfile::tempdir().expect("tempdir");
        if running_as_root() {
            // The server and its tools run as postgres: the directory must be theirs.
            must(
                "chown postgres the cluster directory",
                Command::new("chown")
                    .args(["postgres:postgres"])
                    .arg(root.path())
                    .output(),
            );
        }
        let socket_dir = root.path().join("sock");
        let data = root.path().join("primary");
        std::fs::create_dir(&socket_dir).expect("mkdir the socket directory");
        if running_as_root() {
            must(
                "chown postgres the socket directory",
                Command::new("chown")
                    .args(["postgres:postgres"])
                    .arg(&socket_dir)
                    .output(),
            );
        }
        must(
            "initdb",
            pg_command(&bin, "initdb")
                .arg("-D")
                .arg(&data)
                .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
                .args(["--locale", "C"])
                .output(),
        );
        let mut primary = Node {
            name: "primary".into(),
            data,
            port: free_port(),
            socket_dir,
            bin,
            running: false,
        };
        primary.start();
        primary.sql_in("postgres", &format!("CREATE DATABASE {DB}"));
        Cluster {
            primary,
            standby: None,
            replication: None,
            rebuilt: None,
            root,
        }
    }

    /// A primary and a standby `s1` streaming from it: with `Replication::Sync` the primary
    /// names it in `synchronous_standby_names`, and this returns once the primary reports it
    /// as its synchronous standby; with `Async`, once it streams.
    pub fn with_standby(replication: Replication) -> Cluster {
        let mut c = Cluster::primary();
        c.add_standby(replication);
        c
    }

    fn add_standby(&mut self, replication: Replication) {
        let standby = copy_standby(self.root.path(), &self.primary, "standby");
        follow(&self.primary, &standby, replication);
        self.standby = Some(standby);
        self.replication = Some(replication);
    }

    /// After `promote`: a new standby `s1` copied from the promoted node and following it as
    /// the old one followed the old primary (synchronous or not), as Patroni rebuilds or
    /// re-attaches a standby after a failover. Returns once the promoted node reports it.
    pub fn rebuild_standby(&mut self) {
        let replication = self.replication.expect("a cluster with a standby");
        let rebuilt = copy_standby(self.root.path(), self.standby(), "rebuilt");
        follow(self.standby(), &rebuilt, replication);
        self.rebuilt = Some(rebuilt);
    }

    pub fn standby(&self) -> &Node {
        self.standby.as_ref().expect("the cluster has a standby")
    }

    pub fn standby_mut(&mut self) -> &mut Node {
        self.standby.as_mut().expect("the cluster has a standby")
    }

    /// The otpd database on the primary.
    pub fn url(&self) -> String {
        self.primary.url()
    }

    /// The otpd database on whichever of primary and standby accepts writes: both hosts in one
    /// libpq URL with `target_session_attrs=read-write`, as a cluster's otpd nodes are set up
    /// (a client finds the new primary after a failover without being told).
    pub fn url_both(&self) -> String {
        let standby = self.standby();
        format!(
            "postgresql://postgres@127.0.0.1:{},127.0.0.1:{}/{DB}?target_session_attrs=read-write\
             &connect_timeout=5",
            self.primary.port, standby.port
        )
    }

    /// Kills the primary the hard way (`pg_ctl -m immediate`), as a failover begins.
    pub fn kill_primary(&mut self) {
        self.primary.kill();
    }

    /// Promotes the standby (`pg_ctl promote -w`): returns once it accepts writes.
    pub fn promote(&mut self) {
        let standby = self.standby();
        must(
            "pg_ctl promote",
            pg_command(&standby.bin, "pg_ctl")
                .arg("-D")
                .arg(&standby.data)
                .args(["-w", "-t", "60", "promote"])
                .output(),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while standby.in_recovery() {
            assert!(
                Instant::now() < deadline,
                "the standby did not leave recovery within 30 s:\n{}",
                standby.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the standby cleanly: with `Sync`, commits on the primary then wait for it.
    pub fn stop_standby(&mut self) {
        self.standby_mut().stop();
    }

    /// Waits until the standby has replayed everything the primary has written so far.
    pub fn wait_standby_caught_up(&self) {
        let lsn = self
            .primary
            .sql_in("postgres", "SELECT pg_current_wal_lsn()");
        let standby = self.standby();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let behind = standby.sql_in(
                "postgres",
                &format!("SELECT pg_last_wal_replay_lsn() < '{lsn}'::pg_lsn"),
            );
            if behind == "f" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the standby did not replay up to {lsn} within 30 s:\n{}",
                standby.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The cluster's directory (data directories, logs, socket directory).
    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

/// A standby of `from` in `root/dir`: `pg_basebackup -R -X stream` with application_name s1,
/// started on a port of its own.
fn copy_standby(root: &Path, from: &Node, dir: &str) -> Node {
    let data = root.join(dir);
    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres application_name=s1",
        from.port
    );
    // -R writes primary_conninfo (with application_name, the name the primary knows it by)
    // and standby.signal; -X stream copies the WAL written during the copy.
    must(
        "pg_basebackup",
        pg_command(&from.bin, "pg_basebackup")
            .arg("-D")
            .arg(&data)
            .args([
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
                "-d",
                &conninfo,
            ])
            .output(),
    );
    let mut standby = Node {
        name: dir.into(),
        data,
        port: free_port(),
        socket_dir: from.socket_dir.clone(),
        bin: from.bin.clone(),
        running: false,
    };
    standby.start();
    standby
}

/// Makes `primary` wait for `standby` (Sync) or not (Async), and waits until the primary
/// reports it streaming in that mode. Set after the copy, so that the standby does not
/// inherit the setting and, once promoted, wait for a standby of its own.
fn follow(primary: &Node, standby: &Node, replication: Replication) {
    let names = match replication {
        Replication::Sync => "s1",
        Replication::Async => "",
    };
    // Two calls: psql sends one -c as one transaction, and ALTER SYSTEM refuses those.
    primary.sql_in(
        "postgres",
        &format!("ALTER SYSTEM SET synchronous_standby_names = '{names}'"),
    );
    primary.sql_in("postgres", "SELECT pg_reload_conf()");
    let want = match replication {
        Replication::Sync => "sync",
        Replication::Async => "async",
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = primary.sql_in(
            "postgres",
            "SELECT state || ' ' || sync_state FROM pg_stat_replication \
             WHERE application_name = 's1'",
        );
        if state == format!("streaming {want}") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} is not a streaming {want} standby of {} within 30 s (state: {state:?})\n\
             --- {} log:\n{}\n--- {} log:\n{}",
            standby.name,
            primary.name,
            primary.name,
            primary.log(),
            standby.name,
            standby.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Only what this cluster started, by its own data directory; immediate, since the
        // data is thrown away with the directory.
        for node in [
            Some(&mut self.primary),
            self.standby.as_mut(),
            self.rebuilt.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            if node.running {
                let _ = pg_command(&node.bin, "pg_ctl")
                    .arg("-D")
                    .arg(&node.data)
                    .args(["-w", "-t", "30", "-m", "immediate", "stop"])
                    .output();
                node.running = false;
            }
        }
    }
}
