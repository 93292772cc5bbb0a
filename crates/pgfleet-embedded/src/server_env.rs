//! The environment of the PostgreSQL processes pgfleet starts.
//!
//! `initdb`, `pg_ctl`, the server (which inherits `pg_ctl`'s environment) and every other
//! PostgreSQL program pgfleet runs start with a clean environment, not with pgfleet's own: pgfleet
//! often runs with secrets exported (`PGFLEET_MASTER_KEY`, a catalog URL with a password,
//! `PGPASSWORD`, cloud credentials), and anything in the postmaster's environment can be read by a
//! superuser (`COPY … FROM PROGRAM 'env'`) and is inherited by `archive_command` and friends.
//!
//! Passed on, when set: `PATH` (a default when unset), the locale (`LANG`, `LANGUAGE`, `LC_*`), the
//! time zone (`TZ`, `TZDIR`) and `LD_LIBRARY_PATH` (the bundled binaries find their libraries
//! through their RPATH and do not need it, but binaries named by `PGFLEET_PG_BIN` may). `HOME`,
//! `USER` and `LOGNAME` are the server user's: pgfleet's own when it runs unprivileged, those of the
//! unprivileged account when it runs as root ([`crate::osuser`]). Nothing else: no `PG*` variable
//! (pgfleet passes the data directory with `-D`), no `PGFLEET_*` variable.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use crate::osuser::OsUser;

/// `PATH` when pgfleet's own environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Variables passed on unchanged when set (besides `LC_*`).
const PASSED: &[&str] = &["PATH", "LANG", "LANGUAGE", "TZ", "TZDIR", "LD_LIBRARY_PATH"];

/// Variables that describe the user: passed on only when the server runs as pgfleet's own user.
const OWN_USER: &[&str] = &["HOME", "USER", "LOGNAME"];

/// Whether the variable `name` may reach the server when it runs as pgfleet's user (`own_user`)
/// or as another (`!own_user`).
pub fn passed(name: &OsStr, own_user: bool) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    PASSED.contains(&name)
        || (name.starts_with("LC_")
            && name.len() > 3
            && name[3..]
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'_'))
        || (own_user && OWN_USER.contains(&name))
}

/// The environment of a PostgreSQL process started by pgfleet, from pgfleet's environment `parent`
/// (normally `std::env::vars_os()`) and the OS user the process runs as (`None`: pgfleet's own).
pub fn server_env(
    parent: impl IntoIterator<Item = (OsString, OsString)>,
    user: Option<&OsUser>,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = parent
        .into_iter()
        .filter(|(k, _)| passed(k, user.is_none()))
        .collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    if let Some(u) = user {
        env.push(("HOME".into(), u.home.clone().into_os_string()));
        env.push(("USER".into(), u.name.clone().into()));
        env.push(("LOGNAME".into(), u.name.clone().into()));
    }
    env.sort();
    env
}

/// Replaces the environment `cmd` would inherit with [`server_env`] of this process's environment.
pub fn apply<'c>(cmd: &'c mut Command, user: Option<&OsUser>) -> &'c mut Command {
    cmd.env_clear().envs(server_env(std::env::vars_os(), user))
}

/// A command for a PostgreSQL program that runs as pgfleet's own user (`postgres --version`,
/// `pg_config`), with the clean environment.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    apply(&mut cmd, None);
    cmd
}

/// A command that runs as `user` when given (dropping root), with `/` as working directory so
/// a root-only current directory does not trouble the server, and the clean environment of
/// this module (none of pgfleet's own variables, its secrets included).
pub fn command_as(program: &Path, user: Option<&OsUser>) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir("/");
    if let Some(u) = user {
        // std drops supplementary groups (setgroups(0)) before setuid when it has the right to.
        cmd.uid(u.uid).gid(u.gid);
    }
    apply(&mut cmd, user);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn names(env: &[(OsString, OsString)]) -> Vec<&str> {
        env.iter().map(|(k, _)| k.to_str().unwrap()).collect()
    }

    const PARENT: &[(&str, &str)] = &[
        ("PATH", "/opt/bin:/usr/bin"),
        ("HOME", "/root"),
        ("USER", "root"),
        ("LANG", "C.UTF-8"),
        ("LC_ALL", "C"),
        ("LC_MESSAGES", "en_US.UTF-8"),
        ("TZ", "UTC"),
        ("PGFLEET_MASTER_KEY", "c2VjcmV0"),
        ("PGFLEET_CATALOG_URL", "postgres://u:pw@h/db"),
        ("PGFLEET_TEST_SECRET", "s3cret"),
        ("PGPASSWORD", "pw"),
        ("PGDATA", "/elsewhere"),
        ("PGPORT", "5432"),
        ("AWS_SECRET_ACCESS_KEY", "aws"),
        ("CARGO_PKG_NAME", "pgfleet-embedded"),
        ("LC_", "odd"),
        ("LD_PRELOAD", "/evil.so"),
    ];

    #[test]
    fn only_path_locale_and_time_zone_pass_and_no_secret() {
        let env = server_env(vars(PARENT), None);
        assert_eq!(
            names(&env),
            [
                "HOME",
                "LANG",
                "LC_ALL",
                "LC_MESSAGES",
                "PATH",
                "TZ",
                "USER"
            ]
        );
        assert!(env.contains(&("PATH".into(), "/opt/bin:/usr/bin".into())));
    }

    #[test]
    fn another_server_user_gets_its_own_home_and_name() {
        let user = OsUser {
            name: "postgres".into(),
            uid: 999,
            gid: 999,
            home: "/var/lib/postgresql".into(),
        };
        let env = server_env(vars(PARENT), Some(&user));
        assert_eq!(
            names(&env),
            [
                "HOME",
                "LANG",
                "LC_ALL",
                "LC_MESSAGES",
                "LOGNAME",
                "PATH",
                "TZ",
                "USER"
            ]
        );
        assert!(env.contains(&("HOME".into(), "/var/lib/postgresql".into())));
        assert!(env.contains(&("USER".into(), "postgres".into())));
        assert!(!env.iter().any(|(_, v)| v == "/root" || v == "root"));
    }

    #[test]
    fn a_missing_path_gets_a_default() {
        let env = server_env(vars(&[("PGFLEET_MASTER_KEY", "k")]), None);
        assert_eq!(env, vars(&[("PATH", DEFAULT_PATH)]));
    }
}
