//! Whether a definition printed by PostgreSQL mentions a column: a text heuristic (there is no SQL
//! parser), used to find the indexes, constraints, triggers, policies and generated columns that a
//! column change forces to be recreated.

/// True when definition text `text` (printed by PostgreSQL) mentions column `column` as a whole
/// identifier. A heuristic without a parser: a false positive only recreates an object needlessly.
pub(super) fn mentions(text: &str, column: &str) -> bool {
    let quoted = crate::quote::ident(column);
    if quoted.starts_with('"') {
        if text.contains(&quoted) {
            return true;
        }
        // PostgreSQL leaves some key words unquoted that pgfleet quotes.
        let plain = column
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && column
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        return plain && contains_word(text, column);
    }
    contains_word(text, column)
}

fn contains_word(text: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$' || c == '"';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_whole_identifiers() {
        assert!(mentions(
            "CREATE INDEX i ON public.t USING btree (a, b)",
            "b"
        ));
        assert!(!mentions(
            "CREATE INDEX i ON public.t USING btree (ab)",
            "b"
        ));
        assert!(mentions("CHECK ((\"My Col\" > 0))", "My Col"));
        assert!(mentions("(position > 0)", "position"));
        assert!(!mentions("(\"x\"\"y\" > 0)", "y"));
    }
}
