//! The OS user the server runs as.
//!
//! PostgreSQL refuses to run as root. When pgfleet runs as root, `initdb`, `pg_ctl` and the server run
//! as an unprivileged user instead: `PGFLEET_SERVER_USER` when set, else `postgres` when it exists,
//! else a system user `pgfleet` that pgfleet creates. The data directory is owned by that user, and
//! every directory on the way to it (and to the binaries) must be enterable by it: pgfleet grants the
//! missing traverse bit (`o+x`, never read) and reports each directory it changed.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{EmbeddedError, Result};

/// Environment variable naming the OS user the server runs as when pgfleet runs as root.
pub const SERVER_USER_ENV: &str = "PGFLEET_SERVER_USER";
/// The system user pgfleet creates when running as root and no `postgres` user exists.
pub const CREATED_USER: &str = "pgfleet";

/// An OS account, as far as the runtime needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsUser {
    /// Login name.
    pub name: String,
    /// Numeric user id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory (the server's `HOME`).
    pub home: PathBuf,
}

/// The effective user id of this process (Linux: the owner of `/proc/self`).
pub fn current_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

/// True when this process runs as root.
pub fn is_root() -> bool {
    current_uid() == 0
}

/// Looks a user up through NSS (`getent passwd`), so LDAP or other sources work too.
pub fn lookup(name: &str) -> Option<OsUser> {
    let out = Command::new("getent")
        .args(["passwd", name])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = line.trim().split(':').collect();
    if fields.len() < 4 {
        return None;
    }
    Some(OsUser {
        name: fields[0].to_string(),
        uid: fields[2].parse().ok()?,
        gid: fields[3].parse().ok()?,
        home: PathBuf::from(fields.get(5).copied().unwrap_or("/")),
    })
}

/// The user the server must run as: `None` when this process is not root (the server runs as us).
///
/// # Errors
/// [`EmbeddedError::NoServerUser`] when running as root and no user can be found or created.
pub fn server_user() -> Result<Option<OsUser>> {
    if !is_root() {
        return Ok(None);
    }
    if let Some(name) = std::env::var(SERVER_USER_ENV)
        .ok()
        .filter(|v| !v.is_empty())
    {
        return match lookup(&name) {
            Some(u) if u.uid != 0 => Ok(Some(u)),
            Some(_) => Err(EmbeddedError::NoServerUser {
                reason: format!("{SERVER_USER_ENV}={name} is a root account"),
            }),
            None => Err(EmbeddedError::NoServerUser {
                reason: format!("{SERVER_USER_ENV}={name} names no existing user"),
            }),
        };
    }
    for name in ["postgres", CREATED_USER] {
        if let Some(u) = lookup(name).filter(|u| u.uid != 0) {
            return Ok(Some(u));
        }
    }
    create_system_user(CREATED_USER)?;
    lookup(CREATED_USER)
        .map(Some)
        .ok_or_else(|| EmbeddedError::NoServerUser {
            reason: format!("user {CREATED_USER} was created but cannot be looked up"),
        })
}

fn create_system_user(name: &str) -> Result<()> {
    tracing::info!(
        user = name,
        "creating system user for the PostgreSQL server"
    );
    let out = Command::new("useradd")
        .args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ])
        .output()
        .map_err(|e| EmbeddedError::NoServerUser {
            reason: format!("could not run useradd: {e}"),
        })?;
    // Exit code 9: the user exists already (another process created it concurrently).
    if out.status.success() || out.status.code() == Some(9) {
        Ok(())
    } else {
        Err(EmbeddedError::NoServerUser {
            reason: format!(
                "useradd {name} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// True when `user` may enter the directory described by `meta`.
fn can_traverse(meta: &std::fs::Metadata, user: &OsUser) -> bool {
    let mode = meta.permissions().mode();
    if meta.uid() == user.uid {
        mode & 0o100 != 0
    } else if meta.gid() == user.gid {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

/// Makes sure `user` can enter every directory from `/` down to `path` (which may not exist yet:
/// only its existing ancestors are checked). Adds the traverse bit `o+x` where it is missing and
/// returns the directories it changed, so the caller can tell the user.
///
/// # Errors
/// [`EmbeddedError::Unreachable`] when a directory blocks the user and cannot be changed.
pub fn grant_traverse(path: &Path, user: &OsUser) -> Result<Vec<PathBuf>> {
    let mut changed = Vec::new();
    let abs = crate::paths::absolute(path);
    let ancestors: Vec<&Path> = abs.ancestors().collect();
    for dir in ancestors.into_iter().rev() {
        let Ok(meta) = std::fs::metadata(dir) else {
            break; // does not exist yet: the rest is ours to create
        };
        if !meta.is_dir() || can_traverse(&meta, user) {
            continue;
        }
        let mut perms = meta.permissions();
        perms.set_mode(perms.mode() | 0o001);
        std::fs::set_permissions(dir, perms).map_err(|e| EmbeddedError::Unreachable {
            user: user.name.clone(),
            dir: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        tracing::info!(dir = %dir.display(), user = %user.name, "granted traverse (o+x) so the server user can reach its files");
        changed.push(dir.to_path_buf());
    }
    Ok(changed)
}

/// Changes the owner of `path` (not recursive) to `user`, via `chown` (no `unsafe` in this crate).
pub fn chown(path: &Path, user: &OsUser) -> Result<()> {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
        .map_err(|e| EmbeddedError::io("could not change the owner of", path, e))
}
