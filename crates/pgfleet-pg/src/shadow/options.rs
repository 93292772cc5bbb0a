//! How the desired schema is built: which extensions pgfleet creates itself for the files.

/// Extensions pgfleet creates for schema files by default: pgvector, which pgfleet supports out of
/// the box and which is not a trusted extension.
pub const DEFAULT_ALLOWED_EXTENSIONS: &[&str] = &["vector"];

/// How the desired schema is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowOptions {
    /// Extensions pgfleet creates itself, as the dev URL's role, when a file says `CREATE EXTENSION`
    /// for them. Trusted extensions (`pg_trgm`, `citext`, …) need not be listed: the sandbox role
    /// creates them itself. An extension that is neither trusted nor listed is refused. Default:
    /// [`DEFAULT_ALLOWED_EXTENSIONS`].
    pub allowed_extensions: Vec<String>,
}

impl Default for ShadowOptions {
    fn default() -> Self {
        Self {
            allowed_extensions: DEFAULT_ALLOWED_EXTENSIONS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

impl ShadowOptions {
    /// These options with `names` allowed too (blank names are skipped, duplicates kept once).
    pub fn allow<S: AsRef<str>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        for name in names {
            let name = name.as_ref().trim();
            if !name.is_empty() && !self.allowed_extensions.iter().any(|a| a == name) {
                self.allowed_extensions.push(name.to_string());
            }
        }
        self
    }

    pub(super) fn allows(&self, name: &str) -> bool {
        self.allowed_extensions.iter().any(|a| a == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_allow_more_extensions() {
        let o = ShadowOptions::default().allow(["pg_trgm", " vector ", "", "postgis"]);
        assert_eq!(o.allowed_extensions, ["vector", "pg_trgm", "postgis"]);
        assert!(o.allows("postgis") && !o.allows("dblink"));
    }
}
