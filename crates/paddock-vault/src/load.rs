//! Loading the keyring at startup: configured key, else a key file (generated on first use).

use std::fmt;
use std::fs;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::{Result, VaultError};
use crate::key::Key;
use crate::keyring::Keyring;

/// A key file larger than this is not a key file.
const MAX_KEY_FILE_LEN: u64 = 4096;

/// Where the current key came from. `Display` is meant for a startup log line; it never
/// contains key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The key given in config / environment.
    Config,
    /// The key file, which already existed.
    KeyFile {
        /// Its path.
        path: PathBuf,
    },
    /// The key file did not exist: a new key was generated and written there (mode 0600).
    GeneratedKeyFile {
        /// Its path.
        path: PathBuf,
    },
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Config => f.write_str("configured key"),
            KeySource::KeyFile { path } => write!(f, "key file {}", path.display()),
            KeySource::GeneratedKeyFile { path } => {
                write!(f, "newly generated key file {}", path.display())
            }
        }
    }
}

impl Keyring {
    /// Loads the keyring:
    ///
    /// - the current key is `config_key` if given (base64; an empty value is an error, not a
    ///   fallback, so a blanked-out setting never silently switches keys);
    /// - otherwise the key in `key_file`. If that file does not exist, a key is generated
    ///   and written there with mode 0600 (and missing parent directories are created with
    ///   mode 0700). An existing file that group or others can access is refused, as is
    ///   anything that is not a regular file;
    /// - `previous` keys (base64, as the configured key) are still accepted for opening.
    ///
    /// Returns the keyring and where its current key came from.
    pub fn load(
        config_key: Option<&str>,
        previous: &[String],
        key_file: &Path,
    ) -> Result<(Keyring, KeySource)> {
        let (current, source) = match config_key {
            Some(text) => (parse_key(text, "configured key")?, KeySource::Config),
            None => load_or_create_key_file(key_file)?,
        };
        let previous = previous
            .iter()
            .enumerate()
            .map(|(i, text)| parse_key(text, &format!("previous key #{}", i + 1)))
            .collect::<Result<Vec<Key>>>()?;
        Ok((Keyring::new(current, previous), source))
    }
}

fn parse_key(text: &str, origin: &str) -> Result<Key> {
    Key::parse(text).map_err(|problem| VaultError::InvalidKey {
        origin: origin.to_owned(),
        problem,
    })
}

fn io_err<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> VaultError + 'a {
    move |source| VaultError::KeyFileIo {
        path: path.to_owned(),
        action,
        source,
    }
}

fn load_or_create_key_file(path: &Path) -> Result<(Key, KeySource)> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok((
            read_key_file(path)?,
            KeySource::KeyFile { path: path.into() },
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match create_key_file(path)? {
            Some(key) => Ok((key, KeySource::GeneratedKeyFile { path: path.into() })),
            // Another process created it first: use theirs.
            None => Ok((
                read_key_file(path)?,
                KeySource::KeyFile { path: path.into() },
            )),
        },
        Err(e) => Err(io_err(path, "inspect")(e)),
    }
}

/// Reads and checks an existing key file. Permissions are checked on the opened handle,
/// so they describe the very file that is read.
fn read_key_file(path: &Path) -> Result<Key> {
    let mut file = fs::File::open(path).map_err(io_err(path, "open"))?;
    let meta = file.metadata().map_err(io_err(path, "inspect"))?;
    if !meta.is_file() {
        return Err(VaultError::KeyFileUnusable {
            path: path.into(),
            reason: "not a regular file",
        });
    }
    check_permissions(path, &meta)?;
    if meta.len() > MAX_KEY_FILE_LEN {
        return Err(VaultError::KeyFileUnusable {
            path: path.into(),
            reason: "larger than 4 KiB, which is too large for a key file",
        });
    }
    let mut text = Zeroizing::new(String::with_capacity(MAX_KEY_FILE_LEN as usize + 1));
    (&mut file)
        .take(MAX_KEY_FILE_LEN + 1)
        .read_to_string(&mut text)
        .map_err(io_err(path, "read"))?;
    parse_key(&text, &format!("key file {}", path.display()))
}

#[cfg(unix)]
fn check_permissions(path: &Path, meta: &fs::Metadata) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(VaultError::KeyFilePermissions {
            path: path.into(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path, _meta: &fs::Metadata) -> Result<()> {
    Ok(())
}

/// Creates the key file with a new key. `Ok(None)` if it appeared in the meantime.
fn create_key_file(path: &Path) -> Result<Option<Key>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_dir_private(dir).map_err(io_err(dir, "create directory"))?;
    }
    let key = Key::generate()?;
    let mut file = match open_new_private(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(io_err(path, "create")(e)),
    };
    let mut contents = key.expose_base64();
    contents.push('\n');
    let written = file
        .write_all(contents.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        // Do not leave a half-written key file behind for the next start to trip over.
        drop(file);
        let _ = fs::remove_file(path);
        return Err(io_err(path, "write")(e));
    }
    Ok(Some(key))
}

#[cfg(unix)]
fn create_dir_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_dir_private(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn open_new_private(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_new_private(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}
