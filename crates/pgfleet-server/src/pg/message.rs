//! The protocol messages the front door writes itself (postgres-protocol parses the server's but
//! encodes only the frontend's), and the few client messages it reads into their parts.

use bytes::{BufMut, Bytes, BytesMut};

/// Appends one message: `tag`, its length, then what `body` writes.
fn message(out: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    out.put_u8(tag);
    let at = out.len();
    out.put_i32(0);
    body(out);
    let len = (out.len() - at) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn cstr(out: &mut BytesMut, s: &str) {
    // A NUL inside would end the string early: the protocol cannot carry it.
    out.put_slice(s.replace('\0', "").as_bytes());
    out.put_u8(0);
}

/// `ErrorResponse` (severity `ERROR` or `FATAL`) with a SQLSTATE, a message and maybe a hint.
pub fn error(out: &mut BytesMut, severity: &str, code: &str, text: &str, hint: Option<&str>) {
    message(out, b'E', |b| {
        b.put_u8(b'S');
        cstr(b, severity);
        b.put_u8(b'V');
        cstr(b, severity);
        b.put_u8(b'C');
        cstr(b, code);
        b.put_u8(b'M');
        cstr(b, text);
        if let Some(h) = hint {
            b.put_u8(b'H');
            cstr(b, h);
        }
        b.put_u8(0);
    });
}

/// `ReadyForQuery` with a transaction status (`I`, `T`, `E`).
pub fn ready(out: &mut BytesMut, status: u8) {
    message(out, b'Z', |b| b.put_u8(status));
}

/// `AuthenticationOk` (0) or `AuthenticationCleartextPassword` (3).
pub fn authentication(out: &mut BytesMut, code: i32) {
    message(out, b'R', |b| b.put_i32(code));
}

/// `ParameterStatus`.
pub fn parameter_status(out: &mut BytesMut, name: &str, value: &str) {
    message(out, b'S', |b| {
        cstr(b, name);
        cstr(b, value);
    });
}

/// `BackendKeyData` (protocol 3.0: a 4-byte secret).
pub fn backend_key(out: &mut BytesMut, pid: i32, secret: i32) {
    message(out, b'K', |b| {
        b.put_i32(pid);
        b.put_i32(secret);
    });
}

/// `NegotiateProtocolVersion`: the newest minor version served, and the options not understood.
pub fn negotiate_version(out: &mut BytesMut, minor: i32, unknown: &[String]) {
    message(out, b'v', |b| {
        b.put_i32(minor);
        b.put_i32(unknown.len() as i32);
        for o in unknown {
            cstr(b, o);
        }
    });
}

/// A result as the simple protocol answers it: `RowDescription` (text format) and `DataRow`s when
/// it has columns, then `CommandComplete` (`EmptyQueryResponse` for an empty statement).
pub fn text_result(out: &mut BytesMut, r: &pgfleet::router::wire::TextResult) {
    if !r.fields.is_empty() {
        message(out, b'T', |b| {
            b.put_i16(r.fields.len() as i16);
            for f in &r.fields {
                cstr(b, &f.name);
                b.put_u32(f.table_oid);
                b.put_i16(f.column_id);
                b.put_u32(f.type_oid);
                b.put_i16(f.type_size);
                b.put_i32(f.type_modifier);
                b.put_i16(0);
            }
        });
        for row in &r.rows {
            message(out, b'D', |b| {
                b.put_i16(row.len() as i16);
                for v in row.values() {
                    match v {
                        Some(v) => {
                            b.put_i32(v.len() as i32);
                            b.put_slice(v.as_bytes());
                        }
                        None => b.put_i32(-1),
                    }
                }
            });
        }
    }
    if r.tag.is_empty() {
        message(out, b'I', |_| {});
    } else {
        message(out, b'C', |b| cstr(b, &r.tag));
    }
}

/// `ParseComplete`.
pub fn parse_complete() -> Bytes {
    Bytes::from_static(b"1\0\0\0\x04")
}

/// `CloseComplete`.
pub fn close_complete() -> Bytes {
    Bytes::from_static(b"3\0\0\0\x04")
}

/// A NUL-terminated string at the start of `b`, and what follows it.
pub fn take_cstr(b: &[u8]) -> Option<(&str, &[u8])> {
    let end = b.iter().position(|&c| c == 0)?;
    let s = std::str::from_utf8(&b[..end]).ok()?;
    Some((s, &b[end + 1..]))
}

/// A client's `Parse`: statement name, query, and the rest (parameter types) as sent.
#[derive(Debug)]
pub struct Parse<'a> {
    /// `""`: the unnamed statement.
    pub name: &'a str,
    /// The SQL.
    pub query: &'a str,
    /// Parameter type count and OIDs, as sent.
    pub types: &'a [u8],
}

impl<'a> Parse<'a> {
    /// Reads a `Parse` body.
    pub fn read(body: &'a [u8]) -> Option<Self> {
        let (name, rest) = take_cstr(body)?;
        let (query, types) = take_cstr(rest)?;
        Some(Self { name, query, types })
    }

    /// The whole message with another statement name and query.
    pub fn write(&self, name: &str, query: &str) -> Bytes {
        let mut out = BytesMut::with_capacity(self.query.len() + self.types.len() + 64);
        message(&mut out, b'P', |b| {
            cstr(b, name);
            cstr(b, query);
            b.put_slice(self.types);
        });
        out.freeze()
    }
}

/// A `Bind` with its statement renamed: portal and statement names, then the rest as sent.
pub fn rename_bind(body: &[u8], statement: &str) -> Option<Bytes> {
    let (portal, rest) = take_cstr(body)?;
    let (_, rest) = take_cstr(rest)?;
    let mut out = BytesMut::with_capacity(body.len() + 64);
    message(&mut out, b'B', |b| {
        cstr(b, portal);
        cstr(b, statement);
        b.put_slice(rest);
    });
    Some(out.freeze())
}

/// A `Describe` or `Close` (`tag`) of a statement (`S`) with another name.
pub fn rename_target(tag: u8, statement: &str) -> Bytes {
    let mut out = BytesMut::new();
    message(&mut out, tag, |b| {
        b.put_u8(b'S');
        cstr(b, statement);
    });
    out.freeze()
}

/// The statement name of a `Bind` body.
pub fn bind_statement(body: &[u8]) -> Option<&str> {
    let (_, rest) = take_cstr(body)?;
    take_cstr(rest).map(|(s, _)| s)
}

/// The fields of an `ErrorResponse` body that the front door acts on.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ErrorFields {
    /// `V` (or `S`): `ERROR`, `FATAL`, `PANIC`.
    pub severity: String,
    /// `C`: the SQLSTATE.
    pub code: String,
    /// `M`
    pub message: String,
}

/// Reads an `ErrorResponse` body.
pub fn error_fields(body: &[u8]) -> ErrorFields {
    let mut f = ErrorFields::default();
    let mut b = body;
    while let Some((&field, rest)) = b.split_first() {
        if field == 0 {
            break;
        }
        let Some((value, rest)) = take_cstr(rest) else {
            break;
        };
        match field {
            b'V' => f.severity = value.to_string(),
            b'S' if f.severity.is_empty() => f.severity = value.to_string(),
            b'C' => f.code = value.to_string(),
            b'M' => f.message = value.to_string(),
            _ => {}
        }
        b = rest;
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_their_length() {
        let mut out = BytesMut::new();
        ready(&mut out, b'I');
        assert_eq!(&out[..], b"Z\0\0\0\x05I");
        let mut out = BytesMut::new();
        error(&mut out, "ERROR", "42501", "no", None);
        let len = i32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
        assert_eq!(len + 1, out.len());
        let f = error_fields(&out[5..]);
        assert_eq!(
            (f.severity.as_str(), f.code.as_str(), f.message.as_str()),
            ("ERROR", "42501", "no")
        );
        let p = Parse::read(b"s1\0SELECT $1\0\0\x01\0\0\0\x17").unwrap();
        assert_eq!((p.name, p.query), ("s1", "SELECT $1"));
        let w = p.write("pgf_x", "SELECT $1");
        let again = Parse::read(&w[5..]).unwrap();
        assert_eq!(
            (again.name, again.types),
            ("pgf_x", &b"\0\x01\0\0\0\x17"[..])
        );
        let b = rename_bind(b"p\0s1\0\0\0\0\0\0\0", "pgf_y").unwrap();
        assert_eq!(bind_statement(&b[5..]), Some("pgf_y"));
    }
}
