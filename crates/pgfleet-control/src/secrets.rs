//! Sealed credentials: envelope encryption with AES-256-GCM.
//!
//! Each secret (a tenant's password, a server's admin URL) gets its own random 32-byte **data key**.
//! The secret is encrypted with the data key; the data key is encrypted ("wrapped") with the
//! **master key**. Both use the owner's id (`tenant:<id>`, `server:<name>`) as associated data, so a
//! sealed value copied onto another row does not open. The master key's id (the first 8 bytes of
//! its SHA-256, hex) is stored beside the wrapped key, so rotation knows which key sealed what.
//! Plain secrets are [`Secret`]s, whose `Debug` and `Display` print `***`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;

/// Why sealing or opening failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The master key is not base64.
    #[error(
        "the master key must be base64 of 32 random bytes ({0}); generate one with `pgfleet keys generate`"
    )]
    BadMasterKey(String),
    /// The master key is base64, of the wrong number of bytes.
    #[error(
        "the master key has the wrong length: it decodes to {bytes} bytes, and 32 bytes are needed (base64 of 32 random bytes); generate one with `pgfleet keys generate`"
    )]
    MasterKeyLength {
        /// How many bytes it decodes to.
        bytes: usize,
    },
    /// A master key file cannot be read.
    #[error("cannot read the master key file {}", path.display())]
    KeyFileUnreadable {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A master key file that group or others may read (as ssh refuses such a private key).
    #[error(
        "the master key file {} is open to {} (mode {mode:04o}): a key file must be private (mode 0600 or 0400); run `chmod 600 {}`",
        path.display(),
        match (mode & 0o070 != 0, mode & 0o007 != 0) {
            (true, true) => "its group and other users",
            (false, true) => "other users",
            _ => "its group",
        },
        path.display()
    )]
    KeyFileMode {
        /// The file.
        path: std::path::PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A master key file whose content is not a master key.
    #[error("the master key file {}", path.display())]
    KeyFileContent {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with the key.
        #[source]
        source: Box<SecretError>,
    },
    /// A sealed value does not open with this master key (wrong key, or the value was tampered with).
    #[error(
        "a sealed secret of {owner} does not open with master key {key_id}: it was sealed with key {sealed_with}, or the catalog row was altered; set the master key it was sealed with (PGFLEET_MASTER_KEY)"
    )]
    Open {
        /// Whose secret.
        owner: String,
        /// The id of the key in use.
        key_id: String,
        /// The id recorded with the sealed value.
        sealed_with: String,
    },
    /// The system's random source failed.
    #[error("the system's random number source failed: {0}")]
    Random(String),
}

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself; call only where it is needed (connecting, `tenant credentials`).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Random bytes from the operating system.
///
/// # Errors
/// [`SecretError::Random`].
pub fn random_bytes<const N: usize>() -> Result<[u8; N], SecretError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(buf)
}

/// A random password of 32 characters from `[A-Za-z0-9]` (about 190 bits).
///
/// # Errors
/// [`SecretError::Random`].
pub fn random_password() -> Result<Secret, SecretError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(32);
    while out.len() < 32 {
        for b in random_bytes::<64>()? {
            // Rejection sampling: 62 * 4 = 248, so bytes below 248 map uniformly.
            if b < 248 && out.len() < 32 {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    Ok(Secret(out))
}

/// PBKDF2 iterations in the SCRAM verifiers of tenant roles.
///
/// The iteration count of SCRAM slows down guessing a *guessable* password from a leaked verifier.
/// Tenant passwords are 32 characters from a 62-letter alphabet drawn from the system's random
/// source (about 190 bits), which no amount of guessing finds, so PostgreSQL's default of 4096
/// buys nothing here, while it costs every `CREATE ROLE … PASSWORD` about 5 ms of server CPU
/// (PostgreSQL hashes the empty password with it to refuse empty passwords) and every new tenant
/// connection the same work on the client.
pub const SCRAM_ITERATIONS: u32 = 256;

/// A SCRAM-SHA-256 verifier of `password` in PostgreSQL's `rolpassword` format
/// (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, RFC 5802 / RFC 7677), with a
/// random 16-byte salt: the server only ever sees this, never the password.
///
/// # Errors
/// When the system's random source fails.
pub fn scram_verifier(password: &Secret, iterations: u32) -> Result<String, SecretError> {
    let salt = random_bytes::<16>()?;
    Ok(scram_verifier_with_salt(
        password.expose().as_bytes(),
        &salt,
        iterations,
    ))
}

fn scram_verifier_with_salt(password: &[u8], salt: &[u8], iterations: u32) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::{Digest, Sha256};
    type HmacSha256 = Hmac<Sha256>;
    let hmac = |key: &[u8], data: &[u8]| -> [u8; 32] {
        let mut m =
            <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
        m.update(data);
        m.finalize().into_bytes().into()
    };
    // Hi(password, salt, i): PBKDF2-HMAC-SHA256 with one 32-byte block.
    let mut first = salt.to_vec();
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password, &first);
    let mut salted = u;
    for _ in 1..iterations {
        u = hmac(password, &u);
        for (s, b) in salted.iter_mut().zip(u) {
            *s ^= b;
        }
    }
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        b64.encode(salt),
        b64.encode(stored_key),
        b64.encode(server_key)
    )
}

/// The master key.
#[derive(Clone)]
pub struct MasterKey {
    key: [u8; 32],
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey(id {}, ***)", self.id)
    }
}

impl MasterKey {
    /// Parses base64 (standard, with or without padding) of exactly 32 bytes. Blanks and line
    /// breaks anywhere are ignored (`base64` and `openssl rand -base64` wrap long output).
    ///
    /// # Errors
    /// [`SecretError::BadMasterKey`] for text that is not base64 (the message never quotes it),
    /// [`SecretError::MasterKeyLength`] for base64 of another length than 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, SecretError> {
        let t: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        if t.is_empty() {
            return Err(SecretError::BadMasterKey("it is empty".into()));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&t)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&t))
            .map_err(|_| {
                SecretError::BadMasterKey(format!("{} characters that are not base64", t.len()))
            })?;
        if bytes.len() != 32 && t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SecretError::BadMasterKey(
                "it looks like 64 hex digits (`openssl rand -hex 32`); write the same bytes in base64 instead, e.g. `openssl rand -base64 32`".into(),
            ));
        }
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| SecretError::MasterKeyLength { bytes: b.len() })?;
        Ok(Self::from_bytes(key))
    }

    /// Reads a key file (base64 of 32 bytes, as `pgfleet keys generate` prints it). The file must
    /// be private: one that its group or other users may read (mode & 0o077 != 0) is refused, as
    /// ssh refuses such a private key.
    ///
    /// # Errors
    /// [`SecretError::KeyFileUnreadable`], [`SecretError::KeyFileMode`],
    /// [`SecretError::KeyFileContent`].
    pub fn from_file(path: &std::path::Path) -> Result<Self, SecretError> {
        use std::io::Read;
        let unreadable = |source| SecretError::KeyFileUnreadable {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(unreadable)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = file.metadata().map_err(unreadable)?.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(SecretError::KeyFileMode {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(unreadable)?;
        Self::from_base64(&text).map_err(|e| SecretError::KeyFileContent {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// A key from raw bytes.
    pub fn from_bytes(key: [u8; 32]) -> Self {
        use sha2::Digest;
        let id = sha2::Sha256::digest(key)[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self { key, id }
    }

    /// A new random key.
    ///
    /// # Errors
    /// [`SecretError::Random`].
    pub fn generate() -> Result<Self, SecretError> {
        Ok(Self::from_bytes(random_bytes::<32>()?))
    }

    /// The key as base64 (for `pgfleet keys generate`).
    pub fn to_base64(&self) -> Secret {
        Secret(base64::engine::general_purpose::STANDARD.encode(self.key))
    }

    /// The key's id: hex of the first 8 bytes of its SHA-256. Safe to print.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `secret` for `owner` (`tenant:<id>`, `server:<name>`).
    ///
    /// # Errors
    /// [`SecretError::Random`].
    pub fn seal(&self, owner: &str, secret: &Secret) -> Result<Sealed, SecretError> {
        let data_key = random_bytes::<32>()?;
        let ciphertext = encrypt(&data_key, owner, secret.0.as_bytes())?;
        let wrapped_key = encrypt(&self.key, &format!("{owner}#key"), &data_key)?;
        Ok(Sealed {
            ciphertext,
            wrapped_key,
            key_id: self.id.clone(),
        })
    }

    /// Opens a value sealed for `owner`.
    ///
    /// # Errors
    /// [`SecretError::Open`] for another key or a tampered value.
    pub fn open(&self, owner: &str, sealed: &Sealed) -> Result<Secret, SecretError> {
        let err = || SecretError::Open {
            owner: owner.to_string(),
            key_id: self.id.clone(),
            sealed_with: sealed.key_id.clone(),
        };
        let data_key: [u8; 32] = decrypt(&self.key, &format!("{owner}#key"), &sealed.wrapped_key)
            .ok_or_else(err)?
            .try_into()
            .map_err(|_| err())?;
        let plain = decrypt(&data_key, owner, &sealed.ciphertext).ok_or_else(err)?;
        String::from_utf8(plain).map(Secret).map_err(|_| err())
    }

    /// Re-wraps the data key of `sealed` under `new` (the ciphertext stays as it is).
    ///
    /// # Errors
    /// [`SecretError::Open`] when this key does not open it.
    pub fn rewrap(
        &self,
        owner: &str,
        sealed: &Sealed,
        new: &MasterKey,
    ) -> Result<Sealed, SecretError> {
        let data_key = decrypt(&self.key, &format!("{owner}#key"), &sealed.wrapped_key)
            .ok_or_else(|| SecretError::Open {
                owner: owner.to_string(),
                key_id: self.id.clone(),
                sealed_with: sealed.key_id.clone(),
            })?;
        Ok(Sealed {
            ciphertext: sealed.ciphertext.clone(),
            wrapped_key: encrypt(&new.key, &format!("{owner}#key"), &data_key)?,
            key_id: new.id.clone(),
        })
    }
}

/// A sealed secret as stored in the catalog.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// nonce (12 bytes) ‖ AES-256-GCM(data key, secret, aad = owner).
    pub ciphertext: Vec<u8>,
    /// nonce ‖ AES-256-GCM(master key, data key, aad = owner#key).
    pub wrapped_key: Vec<u8>,
    /// Id of the master key that wrapped the data key.
    pub key_id: String,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Sealed(key {}, {} bytes)",
            self.key_id,
            self.ciphertext.len()
        )
    }
}

fn encrypt(key: &[u8; 32], aad: &str, plain: &[u8]) -> Result<Vec<u8>, SecretError> {
    let cipher = Aes256Gcm::new(key.into());
    let nonce = random_bytes::<12>()?;
    let mut out = nonce.to_vec();
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| SecretError::Random("encryption failed".into()))?;
    out.extend_from_slice(&ct);
    Ok(out)
}

fn decrypt(key: &[u8; 32], aad: &str, sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 12 + 16 {
        return None;
    }
    let cipher = Aes256Gcm::new(key.into());
    cipher
        .decrypt(
            Nonce::from_slice(&sealed[..12]),
            Payload {
                msg: &sealed[12..],
                aad: aad.as_bytes(),
            },
        )
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_verifier_matches_postgres_protocol_for_the_same_salt() {
        let theirs = postgres_protocol::password::scram_sha_256(b"pencil-0123");
        // SCRAM-SHA-256$4096:<salt>$<stored>:<server>
        let salt_b64 = theirs.split('$').nth(1).unwrap().split(':').nth(1).unwrap();
        let salt = base64::engine::general_purpose::STANDARD
            .decode(salt_b64)
            .unwrap();
        assert_eq!(
            scram_verifier_with_salt(b"pencil-0123", &salt, 4096),
            theirs
        );
        let ours = scram_verifier(&Secret::new("pencil-0123"), SCRAM_ITERATIONS).unwrap();
        assert!(
            ours.starts_with(&format!("SCRAM-SHA-256${SCRAM_ITERATIONS}:")),
            "{ours}"
        );
        assert!(!ours.contains("pencil"));
    }

    #[test]
    fn seal_open_round_trip_and_bindings() {
        let k = MasterKey::generate().unwrap();
        let pw = random_password().unwrap();
        assert_eq!(pw.expose().len(), 32);
        let sealed = k.seal("tenant:t1", &pw).unwrap();
        assert_eq!(k.open("tenant:t1", &sealed).unwrap(), pw);
        // Bound to its owner.
        assert!(k.open("tenant:t2", &sealed).is_err());
        // Another key does not open it, and says which key sealed it.
        let other = MasterKey::generate().unwrap();
        let err = other.open("tenant:t1", &sealed).unwrap_err().to_string();
        assert!(err.contains(k.id()) && err.contains(other.id()), "{err}");
        // Tampering is detected.
        let mut bad = sealed.clone();
        let last = bad.ciphertext.len() - 1;
        bad.ciphertext[last] ^= 1;
        assert!(k.open("tenant:t1", &bad).is_err());
        // Rotation re-wraps the data key only.
        let re = k.rewrap("tenant:t1", &sealed, &other).unwrap();
        assert_eq!(re.ciphertext, sealed.ciphertext);
        assert_eq!(other.open("tenant:t1", &re).unwrap(), pw);
        assert!(k.open("tenant:t1", &re).is_err());
    }

    #[test]
    fn secrets_never_print() {
        let pw = Secret::new("canary-password-123");
        let k = MasterKey::generate().unwrap();
        for text in [
            format!("{pw:?}"),
            format!("{pw}"),
            format!("{k:?}"),
            format!("{:?}", k.seal("x", &pw).unwrap()),
        ] {
            assert!(!text.contains("canary"), "{text}");
        }
        assert!(!format!("{k:?}").contains(k.to_base64().expose()));
    }

    #[test]
    fn master_keys_parse_from_base64_of_32_bytes() {
        let k = MasterKey::generate().unwrap();
        let again = MasterKey::from_base64(k.to_base64().expose()).unwrap();
        assert_eq!(again.id(), k.id());
        assert!(
            MasterKey::from_base64("c2hvcnQ=")
                .unwrap_err()
                .to_string()
                .contains("decodes to 5 bytes")
        );
        let err = MasterKey::from_base64("!!!").unwrap_err().to_string();
        assert!(err.contains("not base64") && !err.contains("!!!"), "{err}");
        // Wrapped the way `base64` and `openssl rand -base64` wrap it.
        let b64 = k.to_base64().expose().to_string();
        let wrapped = format!("  {}\n{}\n", &b64[..20], &b64[20..]);
        assert_eq!(MasterKey::from_base64(&wrapped).unwrap().id(), k.id());
    }

    /// The review's case: 64 random bytes in base64 (wrapped at 76 columns by `base64`) were
    /// reported as "not base64".
    #[test]
    fn a_key_of_the_wrong_length_says_its_length_and_the_one_needed() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
        let wrapped = format!("{}\n{}\n", &b64[..76], &b64[76..]);
        for text in [b64.as_str(), wrapped.as_str()] {
            let err = MasterKey::from_base64(text).unwrap_err();
            assert!(
                matches!(err, SecretError::MasterKeyLength { bytes: 64 }),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains("wrong length")
                    && msg.contains("64 bytes")
                    && msg.contains("32 bytes are needed"),
                "{msg}"
            );
            assert!(!msg.contains("not base64"), "{msg}");
        }
        let hex: String = "ab".repeat(32);
        let msg = MasterKey::from_base64(&hex).unwrap_err().to_string();
        assert!(
            msg.contains("64 hex digits") && !msg.contains(&hex),
            "{msg}"
        );
        assert!(
            MasterKey::from_base64(" \n")
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
    }

    #[test]
    fn key_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!(
            "pgfleet-keyfile-{}-{}",
            std::process::id(),
            random_bytes::<4>().unwrap()[0]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("master.key");
        let k = MasterKey::generate().unwrap();
        std::fs::write(&path, format!("{}\n", k.to_base64().expose())).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o666, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = MasterKey::from_file(&path).unwrap_err();
            assert!(matches!(err, SecretError::KeyFileMode { .. }), "{err:?}");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("(mode {mode:04o})"))
                    && msg.contains(&format!("chmod 600 {}", path.display())),
                "{msg}"
            );
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(MasterKey::from_file(&path).unwrap().id(), k.id());
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "c2hvcnQ=").unwrap();
        let err = MasterKey::from_file(&path).unwrap_err();
        let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(
            chain.contains(&path.display().to_string()) && chain.contains("decodes to 5 bytes"),
            "{chain}"
        );
        let missing = dir.join("missing.key");
        let err = MasterKey::from_file(&missing).unwrap_err();
        assert!(
            matches!(err, SecretError::KeyFileUnreadable { .. }),
            "{err:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
