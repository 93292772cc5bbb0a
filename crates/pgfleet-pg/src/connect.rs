//! Connecting: URL parsing with clear errors, a connect timeout, and password redaction for messages.

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls};

use crate::error::{PgError, describe};

/// Default connect timeout when the URL sets none.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Parses a PostgreSQL URL (`postgres://user:password@host:port/db?…`) or key-value string.
///
/// # Errors
/// [`PgError::BadUrl`] with the parser's reason; the password never appears in the message.
pub fn parse_url(url: &str) -> Result<Config, PgError> {
    let mut config = Config::from_str(url).map_err(|e| {
        let reason = crate::error::chain(&e);
        PgError::BadUrl {
            url: redact(url),
            // The driver's cause may quote part of the input (an unknown option's name).
            reason: format!(
                "{}; expected postgres://user:password@host:port/database (or key=value pairs)",
                scrub(&reason, url)
            ),
        }
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    Ok(config)
}

/// Connects without TLS and drives the connection on the current runtime.
///
/// # Errors
/// [`PgError::Connect`] naming the server, database and user, with the cause.
pub async fn connect(config: &Config) -> Result<Client, PgError> {
    // The driver's connect_timeout covers opening the socket only; a server that accepts and never
    // answers would hang the startup handshake forever, so the whole connect is bounded.
    let limit = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(CONNECT_TIMEOUT);
    let (client, conn) = tokio::time::timeout(limit, config.connect(NoTls))
        .await
        .map_err(|_| PgError::Connect {
            target: describe_target(config),
            reason: format!(
                "no answer within {}s (connect_timeout); is this a PostgreSQL server?",
                limit.as_secs()
            ),
        })?
        .map_err(|e| PgError::Connect {
            target: describe_target(config),
            reason: describe(&e),
        })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("connection ended: {e}");
        }
    });
    Ok(client)
}

/// `user@host:port/db` of a config, for messages.
pub fn describe_target(config: &Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    )
}

/// The connection string without its passwords, for messages and logs.
///
/// Every form libpq and tokio-postgres accept is covered:
///
/// - URLs: the password of the user info (`postgres://user:PASSWORD@host/db`, also when it holds an
///   unencoded `@` or `/`, and wherever tokio-postgres would take one: it reads the user info up to
///   the first `@` anywhere) and `password=` (or `sslpassword=`, any key ending in `password`, also
///   percent-encoded) in the query string;
/// - key=value strings: the value of a password key, quoted (`password='a b'`) or not, with
///   backslash escapes and blanks around `=`. Text that cannot be parsed is not shown (`…`): a
///   malformed string may hold a password where no key says so.
pub fn redact(conninfo: &str) -> String {
    let scan = scan(conninfo);
    let mut out = String::with_capacity(conninfo.len());
    let mut at = 0;
    for r in &scan.secrets {
        out.push_str(&conninfo[at..r.start]);
        out.push_str("***");
        at = r.end;
    }
    match scan.cut {
        Some(cut) => {
            out.push_str(conninfo[at..cut].trim_end());
            out.push_str(if out.is_empty() { "…" } else { " …" });
        }
        None => out.push_str(&conninfo[at..]),
    }
    out
}

/// `text` with every password of `conninfo` (as written and percent-decoded) replaced by `***`:
/// for messages that may echo part of a connection string, such as the driver's parse errors.
pub fn scrub(text: &str, conninfo: &str) -> String {
    let scan = scan(conninfo);
    let mut secrets: Vec<String> = scan
        .secrets
        .iter()
        .flat_map(|r| {
            let raw = &conninfo[r.clone()];
            [raw.to_string(), percent_decode(raw), unescape(raw)]
        })
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(cut) = scan.cut {
        // Whatever could not be parsed may be a password: none of its words is shown either.
        secrets.extend(
            conninfo[cut..]
                .split(|c: char| c.is_whitespace() || c == '=' || c == '\'')
                .filter(|w| w.len() >= 4)
                .map(str::to_string),
        );
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for s in &secrets {
        out = out.replace(s.as_str(), "***");
    }
    out
}

/// Where the passwords of a connection string are.
struct Scan {
    /// Byte ranges of password values, in order.
    secrets: Vec<std::ops::Range<usize>>,
    /// A key=value string that cannot be parsed from this byte on.
    cut: Option<usize>,
}

fn is_password_key(key: &str) -> bool {
    key.trim().to_ascii_lowercase().ends_with("password")
}

fn scan(conninfo: &str) -> Scan {
    match url_rest(conninfo) {
        Some(rest) => scan_url(conninfo, conninfo.len() - rest.len()),
        None => scan_keywords(conninfo),
    }
}

/// The part after `scheme://`, when `conninfo` is a URL.
fn url_rest(conninfo: &str) -> Option<&str> {
    let (scheme, rest) = conninfo.split_once("://")?;
    let plausible = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    plausible.then_some(rest)
}

fn scan_url(url: &str, start: usize) -> Scan {
    let rest = &url[start..];
    let mut secrets = Vec::new();
    // Where the user info ends: libpq takes the first `@` before the first `/` (and a password
    // holding an unencoded `@` makes people expect the last); tokio-postgres takes the first `@`
    // anywhere. Every reading is covered, and the query string of each.
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let readings = [authority.find('@'), authority.rfind('@'), rest.find('@')];
    for at in readings.into_iter().flatten() {
        if let Some(colon) = rest[..at].find(':') {
            secrets.push(start + colon + 1..start + at);
        }
    }
    // Each reading's query string starts at the first `?` after its user info.
    for from in readings.map(|at| at.map_or(0, |at| at + 1)) {
        let Some(q) = rest[from..].find('?') else {
            continue;
        };
        let mut pos = start + from + q + 1;
        for param in url[pos..].split('&') {
            match param.split_once('=') {
                Some((key, _)) if is_password_key(&percent_decode(key)) => {
                    secrets.push(pos + key.len() + 1..pos + param.len());
                }
                Some(_) => {}
                // Not key=value (libpq refuses it): it may be a password put in the wrong place.
                None if !param.is_empty() => secrets.push(pos..pos + param.len()),
                None => {}
            }
            pos += param.len() + 1;
        }
    }
    // Readings overlap: merge.
    secrets.sort_by_key(|r| r.start);
    let mut merged: Vec<std::ops::Range<usize>> = Vec::new();
    for r in secrets {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    Scan {
        secrets: merged,
        cut: None,
    }
}

/// libpq's key=value syntax: `key = value`, values quoted with `'…'` or not, `\` escaping the next
/// character in both.
fn scan_keywords(text: &str) -> Scan {
    let b = text.as_bytes();
    let mut secrets = Vec::new();
    let mut i = 0;
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    loop {
        i = skip_ws(i);
        if i >= b.len() {
            return Scan { secrets, cut: None };
        }
        let key_start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' {
            i += 1;
        }
        let key = &text[key_start..i];
        i = skip_ws(i);
        if i >= b.len() || b[i] != b'=' {
            return Scan {
                secrets,
                cut: Some(key_start),
            };
        }
        i = skip_ws(i + 1);
        let value_start = i;
        let quoted = i < b.len() && b[i] == b'\'';
        if quoted {
            i += 1;
        }
        let mut closed = !quoted;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'\'' if quoted => {
                    i += 1;
                    closed = true;
                    break;
                }
                c if !quoted && c.is_ascii_whitespace() => break,
                _ => i += 1,
            }
        }
        let value_end = i.min(b.len());
        let password = is_password_key(key);
        if !closed || value_end == value_start {
            if password && value_end > value_start {
                secrets.push(value_start..value_end);
                return Scan { secrets, cut: None };
            }
            return Scan {
                secrets,
                cut: Some(key_start),
            };
        }
        if password {
            secrets.push(value_start..value_end);
        }
        i = value_end;
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A key=value value as libpq reads it: quotes removed, backslash escapes resolved.
fn unescape(s: &str) -> String {
    let inner = s
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .unwrap_or(s);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            redact("host=h password=secret user=u"),
            "host=h password=*** user=u"
        );
    }

    /// Every form libpq accepts, each with the password `Other2PW` (or `a b`).
    #[test]
    fn redacts_every_form_libpq_accepts() {
        let cases = [
            // URL user info, also with characters libpq wants percent-encoded.
            ("postgresql://u:Other2PW@h/db", "postgresql://u:***@h/db"),
            ("postgres://u:Other%32PW@h/db", "postgres://u:***@h/db"),
            ("postgres://u:Oth/er2PW@h/db", "postgres://u:***@h/db"),
            ("postgres://u:Oth?er2PW@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u:Other2PW@[::1]:5432,h2:5433/db",
                "postgres://u:***@[::1]:5432,h2:5433/db",
            ),
            // The review's URL: the password in the user info and in the query string.
            (
                "postgres://u:Other2PW@h/db?password=Other2PW&badopt=1",
                "postgres://u:***@h/db?password=***&badopt=1",
            ),
            (
                "postgres://u@h/db?sslmode=disable&password=Other2PW",
                "postgres://u@h/db?sslmode=disable&password=***",
            ),
            (
                "postgres:///db?password=Other2PW",
                "postgres:///db?password=***",
            ),
            (
                "postgres://h?pass%77ord=Other2PW",
                "postgres://h?pass%77ord=***",
            ),
            (
                "postgres://h/db?sslpassword=Other2PW",
                "postgres://h/db?sslpassword=***",
            ),
            (
                "postgres://h/db?junk&password=Other2PW",
                "postgres://h/db?***&password=***",
            ),
            (
                "postgres://h/db?Other2PW&sslmode=disable",
                "postgres://h/db?***&sslmode=disable",
            ),
            // An `@` in the query: tokio-postgres reads the user info up to it, libpq does not.
            (
                "postgres://h/db?password=Other2PW&user=me@example.com",
                "postgres://h/db?password=***&user=me@example.com",
            ),
            (
                "postgres://h:5432/db?password=Other2PW&user=me@example.com",
                "postgres://h:***@example.com",
            ),
            // key=value, quoted, escaped, with blanks around `=`.
            ("host=h password='a b' user=u", "host=h password=*** user=u"),
            (
                "host=h password = Other2PW user=u",
                "host=h password = *** user=u",
            ),
            ("password='it\\'s Other2PW' host=h", "password=*** host=h"),
            (
                "host=h password=Other\\ 2PW user=u",
                "host=h password=*** user=u",
            ),
            ("host=h\tpassword=Other2PW", "host=h\tpassword=***"),
            ("host=h PASSWORD=Other2PW", "host=h PASSWORD=***"),
            ("host=h sslpassword='Other2PW'", "host=h sslpassword=***"),
            // An unterminated quote: libpq refuses it; the rest is not shown either way.
            ("host=h password='Other2PW", "host=h password=***"),
            ("host='h password=Other2PW", "…"),
            // Not parseable: what cannot be parsed is not shown.
            ("host=h password Other2PW", "host=h …"),
            ("Other2PW", "…"),
        ];
        for (input, want) in cases {
            let got = redact(input);
            assert_eq!(got, want, "{input}");
            assert!(
                !got.contains("Other2PW") && !got.contains("a b"),
                "{input}: {got}"
            );
        }
    }

    #[test]
    fn scrub_hides_passwords_in_any_text() {
        let url = "postgres://u:Other2PW@h/db?password=Other%32PW&badopt=1";
        assert_eq!(scrub("x Other2PW y Other%32PW", url), "x *** y ***");
        let kv = "host=h password='a\\ b'";
        assert_eq!(scrub("saw a b and 'a\\ b'", kv), "saw *** and ***");
    }

    #[test]
    fn bad_urls_are_explained_without_the_password() {
        for url in [
            "postgres://u:secret@h:notaport/db",
            "postgres://u:secret@h/db?password=secret&badopt=1",
            "postgres://u@h/db?secret&password=secret",
            "host=h password='secret value' badopt=1",
            "host=h password=secret user",
        ] {
            let err = parse_url(url).unwrap_err();
            let msg = err.to_string();
            assert!(!msg.contains("secret"), "{url}: {msg}");
            assert!(msg.contains("invalid"), "{msg}");
        }
        // The driver's cause is kept: it says what is wrong.
        let msg = parse_url("postgres://u:secret@h/db?password=secret&badopt=1")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("unknown option `badopt`"), "{msg}");
        let msg = parse_url("postgres://u@h/db?secret&password=secret")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("unknown option `***&password`"), "{msg}");
    }
}
