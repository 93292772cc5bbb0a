//! The tokens of one SQL statement, enough to recognize what kind of statement it is: key words,
//! names, string constants and punctuation, with comments and whitespace skipped. Used by
//! [`crate::guard`] and [`crate::extensions`] on the statements of [`crate::split`]. It is not a
//! parser: it never decides what PostgreSQL will run, only what a statement starts with.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A bare word: a key word or an unquoted identifier.
    Word,
    /// A quoted identifier, `"…"` or `U&"…"`.
    Quoted,
    /// A string constant: `'…'`, `E'…'`, `B'…'`, `X'…'`, `N'…'`, `U&'…'` or `$tag$…$tag$`.
    Str,
    /// A number.
    Number,
    /// Any other character (punctuation, operators, parameters).
    Other,
}

/// A token of a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    /// Its kind.
    pub kind: Kind,
    /// Its text as written (quotes included).
    pub text: &'a str,
    /// Byte offset of its end in the statement.
    pub end: usize,
    /// How many parentheses are open around it (a parenthesis itself counts as outside).
    pub depth: u32,
}

impl Token<'_> {
    /// True for the bare word `kw` (case-insensitive); `kw` is lowercase.
    pub fn is(&self, kw: &str) -> bool {
        self.kind == Kind::Word && self.text.eq_ignore_ascii_case(kw)
    }

    /// The name this token stands for: a bare word folded to lowercase, a quoted identifier
    /// unquoted as written. `None` for other tokens.
    pub fn name(&self) -> Option<String> {
        match self.kind {
            Kind::Word => Some(self.text.to_lowercase()),
            Kind::Quoted => {
                let inner = self
                    .text
                    .strip_prefix("U&")
                    .or_else(|| self.text.strip_prefix("u&"))
                    .unwrap_or(self.text);
                let inner = inner.strip_prefix('"')?.strip_suffix('"')?;
                Some(inner.replace("\"\"", "\""))
            }
            _ => None,
        }
    }

    /// The value of a plain string constant (`'…'` or `$tag$…$tag$`); `None` for other tokens and
    /// for escape, bit and Unicode strings.
    pub fn string(&self) -> Option<String> {
        if self.kind != Kind::Str {
            return None;
        }
        if let Some(inner) = self.text.strip_prefix('\'') {
            return Some(inner.strip_suffix('\'')?.replace("''", "'"));
        }
        if self.text.starts_with('$') {
            let tag_end = self.text[1..].find('$')? + 2;
            let body = &self.text[tag_end..];
            return Some(body[..body.len().checked_sub(tag_end)?].to_string());
        }
        None
    }
}

/// The tokens of `stmt`, comments and whitespace left out. An unterminated quote or comment ends
/// the statement.
pub(crate) fn tokens(stmt: &str) -> Vec<Token<'_>> {
    let bytes = stmt.as_bytes();
    let mut out = Vec::new();
    let mut depth = 0u32;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let kind = match c {
            b if b.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = stmt[i..].find('\n').map_or(bytes.len(), |n| i + n);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let mut nesting = 0;
                while i < bytes.len() {
                    if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        nesting += 1;
                        i += 2;
                    } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        nesting -= 1;
                        i += 2;
                        if nesting == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b'\'' => {
                i = end_of_quote(bytes, i, b'\'', false);
                Kind::Str
            }
            b'"' => {
                i = end_of_quote(bytes, i, b'"', false);
                Kind::Quoted
            }
            b'$' => match dollar_quote_end(stmt, i) {
                Some(end) => {
                    i = end;
                    Kind::Str
                }
                None => {
                    i += 1;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                    Kind::Other
                }
            },
            b'0'..=b'9' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                    i += 1;
                }
                Kind::Number
            }
            b'(' => {
                i += 1;
                out.push(Token {
                    kind: Kind::Other,
                    text: &stmt[start..i],
                    end: i,
                    depth,
                });
                depth += 1;
                continue;
            }
            b')' => {
                i += 1;
                depth = depth.saturating_sub(1);
                Kind::Other
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let end = stmt[i..]
                    .find(|ch: char| !(ch.is_alphanumeric() || ch == '_' || ch == '$'))
                    .map_or(bytes.len(), |n| i + n);
                let word = &stmt[i..end];
                // String constants with a prefix: E'…' (backslash escapes), B'…', X'…', N'…',
                // U&'…' and U&"…".
                match (word.to_ascii_lowercase().as_str(), bytes.get(end)) {
                    ("e", Some(b'\'')) => {
                        i = end_of_quote(bytes, end, b'\'', true);
                        Kind::Str
                    }
                    ("b" | "x" | "n", Some(b'\'')) => {
                        i = end_of_quote(bytes, end, b'\'', false);
                        Kind::Str
                    }
                    ("u", Some(b'&')) if matches!(bytes.get(end + 1), Some(b'\'' | b'"')) => {
                        let q = bytes[end + 1];
                        i = end_of_quote(bytes, end + 1, q, false);
                        if q == b'"' { Kind::Quoted } else { Kind::Str }
                    }
                    _ => {
                        i = end;
                        Kind::Word
                    }
                }
            }
            _ => {
                i += stmt[i..].chars().next().map_or(1, char::len_utf8);
                Kind::Other
            }
        };
        out.push(Token {
            kind,
            text: &stmt[start..i],
            end: i,
            depth,
        });
    }
    out
}

/// The end (exclusive) of the quoted text starting at `open` (a doubled quote is part of it; with
/// `escapes`, a backslash escapes the next byte).
fn end_of_quote(bytes: &[u8], open: usize, quote: u8, escapes: bool) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        if escapes && bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// The end (exclusive) of a dollar-quoted string starting at `open`, if `$` starts one.
fn dollar_quote_end(sql: &str, open: usize) -> Option<usize> {
    let rest = &sql[open + 1..];
    let tag_len = rest.find('$')?;
    let tag = &rest[..tag_len];
    let is_tag = tag.chars().all(|ch| ch.is_alphanumeric() || ch == '_')
        && !tag.starts_with(|ch: char| ch.is_ascii_digit());
    if !is_tag {
        return None;
    }
    let delim = &sql[open..open + tag_len + 2];
    let body = open + delim.len();
    Some(
        sql[body..]
            .find(delim)
            .map_or(sql.len(), |close| body + close + delim.len()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Vec<(Kind, &str, u32)> {
        tokens(sql)
            .into_iter()
            .map(|t| (t.kind, t.text, t.depth))
            .collect()
    }

    #[test]
    fn words_names_strings_and_depth() {
        use Kind::*;
        assert_eq!(
            kinds("COPY (SELECT 1 /* x */ FROM \"T\"\"x\") TO -- c\n $f$/tmp/a$f$"),
            vec![
                (Word, "COPY", 0),
                (Other, "(", 0),
                (Word, "SELECT", 1),
                (Number, "1", 1),
                (Word, "FROM", 1),
                (Quoted, "\"T\"\"x\"", 1),
                (Other, ")", 0),
                (Word, "TO", 0),
                (Str, "$f$/tmp/a$f$", 0),
            ]
        );
        let t = tokens("E'it\\'s' u&'x' \"My \"\"S\"\"\" Abc 'a''b' $$q$$ $1");
        assert_eq!(t[0].kind, Str);
        assert_eq!(t[1].kind, Str);
        assert_eq!(t[2].name().as_deref(), Some("My \"S\""));
        assert_eq!(t[3].name().as_deref(), Some("abc"));
        assert_eq!(t[4].string().as_deref(), Some("a'b"));
        assert_eq!(t[5].string().as_deref(), Some("q"));
        assert_eq!((t[6].kind, t[6].text), (Other, "$1"));
        assert!(t[3].is("abc"));
    }
}
