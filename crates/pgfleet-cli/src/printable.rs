//! Text for humans that may hold tenant keys: keys are arbitrary strings (up to 256 bytes), so
//! control characters, Unicode format characters (bidi overrides and isolates, zero-width
//! characters, the BOM, …) and line separators are escaped (`\\n`, `\\u{202e}`) in tables,
//! summaries, events and logs. Without that a key could fake rows, or reorder or hide what a
//! terminal shows around it. JSON output keeps keys exactly (JSON escaping is enough there).

/// A key as it may be printed in a table: control characters, Unicode format characters (bidi
/// overrides and isolates, zero-width characters, the BOM, …) and line separators escaped
/// (`\n`, `\u{202e}`), so a key can neither fake rows nor reorder or hide what is printed around it.
/// JSON output keeps keys exactly.
pub fn printable(key: &str) -> String {
    escape(key, false)
}

/// Text printed for humans that may quote keys (errors, event details, findings): as [`printable`],
/// keeping line breaks and tabs.
pub fn printable_text(text: &str) -> String {
    escape(text, true)
}

fn escape(text: &str, keep_lines: bool) -> String {
    let hidden =
        |c: char| (c.is_control() && !(keep_lines && matches!(c, '\n' | '\t'))) || is_invisible(c);
    if !text.chars().any(hidden) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !hidden(c) {
            out.push(c);
        } else if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.extend(c.escape_unicode());
        }
    }
    out
}

/// Unicode's format characters (general category Cf, as of Unicode 16) and the line and paragraph
/// separators: invisible, yet they change how the text around them is shown.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// The log writer of the CLI: each event is formatted into a buffer, then written to stderr with
/// [`is_invisible`] characters escaped. Fields such as `tenant = %key` print keys with `Display`;
/// this catches them all in one place. Control characters are left to the formatter (it writes
/// its own colour sequences).
#[derive(Debug, Default)]
pub struct LogWriter {
    buf: Vec<u8>,
}

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let bytes = std::mem::take(&mut self.buf);
        std::io::stderr()
            .lock()
            .write_all(&escape_invisible(&bytes))
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let _ = std::io::Write::flush(self);
    }
}

/// `bytes` with the UTF-8 of every [`is_invisible`] character replaced by its `\\u{…}` escape;
/// everything else (invalid UTF-8 included) is kept as it is.
fn escape_invisible(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        if valid.chars().any(is_invisible) {
            for c in valid.chars() {
                if is_invisible(c) {
                    out.extend(c.escape_unicode().to_string().bytes());
                } else {
                    let mut b = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        } else {
            out.extend_from_slice(valid.as_bytes());
        }
        out.extend_from_slice(chunk.invalid());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_print_with_control_and_invisible_characters_escaped() {
        assert_eq!(printable("user-42"), "user-42");
        assert_eq!(printable("line1\nline2"), "line1\\nline2");
        assert_eq!(printable("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
        for c in [
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{200e}',
            '\u{200f}',
            '\u{202a}',
            '\u{202b}',
            '\u{202c}',
            '\u{202d}',
            '\u{202e}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{feff}',
            '\u{00ad}',
            '\u{061c}',
            '\u{2060}',
            '\u{2028}',
            '\u{2029}',
            '\u{e0041}',
            '\u{1b}',
            '\u{7f}',
            '\u{85}',
        ] {
            let shown = printable(&format!("a{c}b"));
            assert!(!shown.contains(c), "{c:?} printed as it is: {shown:?}");
            assert!(
                shown.starts_with("a\\") && shown.ends_with('b'),
                "{shown:?}"
            );
        }
        // Visible non-ASCII text is left alone.
        assert_eq!(printable("café Ünïcödé 日本 🙂"), "café Ünïcödé 日本 🙂");
        assert_eq!(printable_text("a\nb\u{202e}"), "a\nb\\u{202e}");
    }

    /// The explicit list holds no visible character: Rust's `Debug` (whose table comes from the
    /// Unicode data) escapes every one of them.
    #[test]
    fn the_list_holds_only_characters_debug_escapes() {
        let listed: Vec<char> = (0..=0x10FFFF_u32)
            .filter_map(char::from_u32)
            .filter(|c| is_invisible(*c))
            .collect();
        assert!(listed.len() > 150, "{}", listed.len());
        for c in listed {
            assert!(format!("{c:?}").contains("\\u{"), "{c:?} is visible");
        }
    }

    #[test]
    fn logs_escape_invisible_characters_only() {
        let line = "\x1b[33m WARN\x1b[0m took privileges tenant=a\u{202e}b\u{200b} n=1\n";
        let out = String::from_utf8(escape_invisible(line.as_bytes())).unwrap();
        assert_eq!(
            out,
            "\x1b[33m WARN\x1b[0m took privileges tenant=a\\u{202e}b\\u{200b} n=1\n"
        );
        let mut bytes = b"x\xff\xe2\x80".to_vec();
        bytes.extend("\u{202e}".as_bytes());
        assert_eq!(escape_invisible(&bytes), b"x\xff\xe2\x80\\u{202e}".to_vec());
    }
}
