//! The key file: exactly 32 random bytes, mode 0600, never overwritten.

use super::MasterKey;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("key file {path} does not exist; create it with `otpd init`")]
    Missing { path: PathBuf },
    #[error("key file {path} is readable by group or others (mode {mode:04o}); fix it with: chmod 600 {path}")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error(
        "key file {path} must hold exactly 32 bytes, it holds {len}; restore it from your backup"
    )]
    BadLength { path: PathBuf, len: usize },
    #[error("key file {path} already exists; otpd never overwrites a key (the sealed secrets depend on it)")]
    Exists { path: PathBuf },
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} does not open this database's secrets: it is not the key they were sealed with; restore the right key file")]
    WrongKey { path: PathBuf },
    #[error("cannot create a random key: {0}")]
    Random(String),
}

pub fn load_key_file(path: &Path) -> Result<MasterKey, KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyFileError::Missing {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(io(e)),
    };
    let mode = f.metadata().map_err(io)?.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    // Read one byte more than needed so a longer file is noticed, not silently cut.
    let mut buf = zeroize::Zeroizing::new([0u8; 33]);
    let mut len = 0;
    loop {
        let n = f.read(&mut buf[len..]).map_err(io)?;
        if n == 0 {
            break;
        }
        len += n;
        if len == buf.len() {
            break;
        }
    }
    if len != 32 {
        return Err(KeyFileError::BadLength {
            path: path.to_path_buf(),
            len,
        });
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&buf[..32]);
    Ok(MasterKey::from_bytes(key))
}

/// Creates a new key file with 32 random bytes; fails if one exists.
pub fn create_key_file(path: &Path) -> Result<(), KeyFileError> {
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::getrandom(key.as_mut()).map_err(|e| KeyFileError::Random(e.to_string()))?;
    write_key_file(path, &key)
}

/// Writes `key` to a new file (mode 0600, synced); fails if the file exists.
pub fn write_key_file(path: &Path, key: &[u8; 32]) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(KeyFileError::Exists {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(io(e)),
    };
    f.write_all(key).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn create_load_and_refuse_overwrite_and_open_modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("k");
        create_key_file(&p).expect("create");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        load_key_file(&p).expect("load");
        assert!(matches!(
            create_key_file(&p),
            Err(KeyFileError::Exists { .. })
        ));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let err = load_key_file(&p).expect_err("too open");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(&p, [1u8; 31]).expect("write");
        assert!(matches!(
            load_key_file(&p),
            Err(KeyFileError::BadLength { len: 31, .. })
        ));
    }
}
