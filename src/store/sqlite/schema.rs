//! Versioned schema. Each entry moves the database from version i to i+1; `PRAGMA
//! user_version` remembers where a database stands. Never edit a released step: add one.

pub const MIGRATIONS: &[&str] = &[
    // 1: accounts, tokens, audit
    "CREATE TABLE accounts (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL UNIQUE,
        level         TEXT NOT NULL,
        pin_salt      BLOB,
        pin_hash      BLOB,
        failures      INTEGER NOT NULL DEFAULT 0,
        last_failure  INTEGER,
        locked_until  INTEGER,
        created_at    INTEGER NOT NULL
    );
    CREATE TABLE tokens (
        id            INTEGER PRIMARY KEY,
        serial        TEXT NOT NULL UNIQUE,
        account_id    INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        kind          TEXT NOT NULL,
        state         TEXT NOT NULL,
        algorithm     TEXT NOT NULL,
        digits        INTEGER NOT NULL,
        period        INTEGER NOT NULL,
        secret        BLOB NOT NULL,
        last_counter  INTEGER NOT NULL DEFAULT -1,
        drift         INTEGER NOT NULL DEFAULT 0,
        label         TEXT NOT NULL DEFAULT '',
        created_at    INTEGER NOT NULL,
        last_used_at  INTEGER
    );
    CREATE INDEX tokens_account ON tokens(account_id);
    CREATE TABLE audit (
        id       INTEGER PRIMARY KEY,
        ts_ms    INTEGER NOT NULL,
        user     TEXT NOT NULL,
        service  TEXT NOT NULL,
        rhost    TEXT,
        client   TEXT,
        verdict  TEXT NOT NULL,
        reason   TEXT NOT NULL,
        serial   TEXT
    );
    CREATE INDEX audit_ts ON audit(ts_ms);
    CREATE INDEX audit_user ON audit(user, ts_ms);",
    // 2: installation-wide values (the sealed hash key after a key rotation)
    "CREATE TABLE meta (
        name   TEXT PRIMARY KEY,
        value  BLOB NOT NULL
    );",
    // 3: app-specific passwords (mail clients once 2FA is on): keyed hashes, never the password
    "CREATE TABLE app_passwords (
        id              INTEGER PRIMARY KEY,
        account_id      INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        label           TEXT NOT NULL,
        services        TEXT NOT NULL DEFAULT '',
        salt            BLOB NOT NULL,
        hash            BLOB NOT NULL,
        created_at      INTEGER NOT NULL,
        last_used_at    INTEGER,
        last_used_from  TEXT,
        UNIQUE (account_id, label)
    );
    CREATE INDEX app_passwords_account ON app_passwords(account_id);",
    // 4 (tokens issue): public identifiers of tokens (a YubiKey's public id), unique among
    // YubiKeys so an OTP finds one token only; backup codes as keyed hashes, each used once.
    "ALTER TABLE tokens ADD COLUMN public_id TEXT;
    CREATE UNIQUE INDEX tokens_yubikey_public_id ON tokens(public_id)
        WHERE kind IN ('yubikey', 'yubikey-remote');
    CREATE TABLE backup_codes (
        id        INTEGER PRIMARY KEY,
        token_id  INTEGER NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,
        salt      BLOB NOT NULL,
        hash      BLOB NOT NULL,
        used_at   INTEGER
    );
    CREATE INDEX backup_codes_token ON backup_codes(token_id);",
    // 5 (e-mail codes): the code last sent per e-mail token (keyed hash, expiry, used once;
    // AUTOINCREMENT so a replaced code's id never comes back), and the sends per account for
    // the hourly rate limit.
    "CREATE TABLE email_codes (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        token_id    INTEGER NOT NULL UNIQUE REFERENCES tokens(id) ON DELETE CASCADE,
        salt        BLOB NOT NULL,
        hash        BLOB NOT NULL,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL,
        used_at     INTEGER
    );
    CREATE TABLE email_sends (
        id          INTEGER PRIMARY KEY,
        account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        sent_at     INTEGER NOT NULL
    );
    CREATE INDEX email_sends_account ON email_sends(account_id, sent_at);",
    // 6 (performance): the audit(user, ts_ms) index cost every login one write to a random
    // page (the user's place in the index) and was never used: `otpd audit --user` filters
    // with `?1 IS NULL OR user = ?1`, which SQLite answers by walking the newest rows.
    "DROP INDEX IF EXISTS audit_user;",
    // 7 (guessing protection): the sources an account logged in from, most recently added first, one per
    // line; failures from them count apart from the rest (engine/gate.rs). In the account
    // row because every login reads that row anyway.
    // `unlocks` counts the admin's unlocks, so a running daemon tells an unlock from a row
    // read before its own failure was committed.
    "ALTER TABLE accounts ADD COLUMN familiar TEXT NOT NULL DEFAULT '';
    ALTER TABLE accounts ADD COLUMN unlocks INTEGER NOT NULL DEFAULT 0;",
    // 8 (issue 14, item 6): the look-alike key of each account name (confusable.rs), so that a new
    // name like an existing one is found by one index lookup. Not unique: accounts created
    // before this step may already look alike. Existing rows are filled in by `migrate`
    // (the skeleton needs Unicode tables SQL does not have).
    "ALTER TABLE accounts ADD COLUMN skeleton TEXT;
    CREATE INDEX accounts_skeleton ON accounts(skeleton);",
    // 9 (issue 16, item 3): an e-mail token's address gets a column of its own; it used to be
    // kept in `public_id`, the YubiKey's device id, which made one field mean two things.
    "ALTER TABLE tokens ADD COLUMN address TEXT;
    UPDATE tokens SET address = public_id, public_id = NULL WHERE kind = 'email';",
    // 10 (issue 14, equal time): an answer that counts nothing still pays one write to an
    // account row, as a counted failure does (an UPDATE of `meta` came 35-75 µs sooner):
    // `probes` is what it changes. Not a statistic: unknown users' answers pay into the row
    // of the account their login read in its place.
    "ALTER TABLE accounts ADD COLUMN probes INTEGER NOT NULL DEFAULT 0;",
    // 11 (issue 18, item 5): trusted devices. Only the keyed hash of a device's token is
    // kept (unique: a login finds its device by it), and a keyed hash of the account's level,
    // PIN and active tokens when it was trusted (`binding`): a change of any ends it.
    "CREATE TABLE trusted_devices (
        id            INTEGER PRIMARY KEY,
        account_id    INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        client        TEXT,
        class         TEXT NOT NULL,
        label         TEXT NOT NULL,
        hash          BLOB NOT NULL UNIQUE,
        binding       BLOB NOT NULL,
        created_at    INTEGER NOT NULL,
        last_used_at  INTEGER,
        expires_at    INTEGER NOT NULL
    );
    CREATE INDEX trusted_devices_account ON trusted_devices(account_id);",
    // 12 (issue 18, management API): API keys, kept only as keyed hashes (store/api_keys.rs);
    // the hash is unique so a request finds its key by one index lookup.
    "CREATE TABLE api_keys (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL UNIQUE,
        scope         TEXT NOT NULL,
        hash          BLOB NOT NULL UNIQUE,
        created_at    INTEGER NOT NULL,
        last_used_at  INTEGER
    );",
    // 13 (issue 19, the account cache): every change of what a login reads about an account
    // or its tokens, whoever makes it (the daemon, the CLI in another process, an admin's
    // own SQL), leaves a row here; the daemon's cache reads them before it serves
    // (sqlite/feed.rs) and its writer deletes those read. AUTOINCREMENT: a number is never
    // used twice, also after the rows were deleted. A NULL account names nobody (the write of
    // an unknown user's answer on a database without accounts, so that it costs what a
    // known account's failure costs).
    // Not announced: a new account (the cache never holds a name it did not find) and the
    // daemon's own advance of a token's counter (its drift and time of use may change
    // with it).
    // Only the daemon's own advances go unannounced, which it writes through into its cache:
    // they count `advances` (commit/ops.rs); a counter moved by another process (`otpd
    // check`, `otpd token resync`) is announced, or the daemon's cache would keep a counter
    // too far behind for the user's next code to be in its window.
    // Every column of `tokens` is compared here but those of an advance: a column added
    // later must be added too (`feed::tests::every_column_a_login_reads_is_announced`).
    "ALTER TABLE tokens ADD COLUMN advances INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE changes (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        account_id  INTEGER
    );
    CREATE TRIGGER accounts_changed AFTER UPDATE OF id, name, level, pin_salt, pin_hash,
        failures, last_failure, locked_until, created_at, familiar, unlocks, probes
        ON accounts
    BEGIN
        INSERT INTO changes (account_id) VALUES (OLD.id);
    END;
    CREATE TRIGGER accounts_deleted AFTER DELETE ON accounts
    BEGIN
        INSERT INTO changes (account_id) VALUES (OLD.id);
    END;
    CREATE TRIGGER tokens_added AFTER INSERT ON tokens
    BEGIN
        INSERT INTO changes (account_id) VALUES (NEW.account_id);
    END;
    CREATE TRIGGER tokens_deleted AFTER DELETE ON tokens
    BEGIN
        INSERT INTO changes (account_id) VALUES (OLD.account_id);
    END;
    CREATE TRIGGER tokens_changed AFTER UPDATE ON tokens
    WHEN NOT (NEW.last_counter > OLD.last_counter AND NEW.advances = OLD.advances + 1
        AND NEW.id = OLD.id AND NEW.serial IS OLD.serial AND NEW.account_id = OLD.account_id
        AND NEW.kind IS OLD.kind AND NEW.state IS OLD.state
        AND NEW.algorithm IS OLD.algorithm AND NEW.digits IS OLD.digits
        AND NEW.period IS OLD.period AND NEW.secret IS OLD.secret AND NEW.label IS OLD.label
        AND NEW.created_at IS OLD.created_at AND NEW.public_id IS OLD.public_id
        AND NEW.address IS OLD.address)
    BEGIN
        INSERT INTO changes (account_id) VALUES (OLD.account_id);
        INSERT INTO changes (account_id) SELECT NEW.account_id
            WHERE NEW.account_id != OLD.account_id;
    END;
    CREATE TRIGGER unknown_user_failure AFTER UPDATE ON meta
        WHEN NEW.name = 'unknown_user_failures'
    BEGIN
        INSERT INTO changes (account_id) VALUES (NULL);
    END;",
];
