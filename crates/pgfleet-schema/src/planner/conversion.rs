//! What converting a column's stored values to another type can do to them, and how to ask
//! PostgreSQL for the conversion.
//!
//! `ALTER COLUMN … TYPE t` without `USING` converts with PostgreSQL's *assignment* casts, the ones an
//! `INSERT` uses: they raise an error on a value that does not fit (`value too long for type
//! character varying(3)`). An explicit cast (`USING c::t`) may instead truncate or round silently
//! (`'abcd'::varchar(3)` is `abc`). So the planner writes no `USING` when an assignment cast exists,
//! and an explicit cast only for pairs that have none (`text` → `integer`, `text` → an enum, …).
//!
//! The planner is pure, so the built-in casts it relies on are written down here, from PostgreSQL's
//! `pg_cast` and the types' input and typmod functions; `crates/pgfleet-pg/tests/integration/conversions.rs`
//! checks every class against a real server. Type names are read as `format_type` prints them with
//! an empty `search_path` (`character varying(3)`, `numeric(10,2)`, `timestamp(3) with time zone`,
//! `text[]`, `public.mood`); enums and domains are looked up by that name in the model of their side.
//! **A pair this module does not know** (an extension type such as `public.vector(3)`, `inet`,
//! `bytea`, a type change inside arrays of unknown types, …) **counts as [`Class::LosesValues`]** and
//! keeps the explicit cast, as before: pgfleet cannot tell what it does to the values.

use crate::model::Model;
use crate::plan::Hazard;

/// What a type change can do to the values already stored in a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Class {
    /// Every value converts, and converting it back gives the value it was.
    Safe,
    /// A value that does not fit makes PostgreSQL raise an error: the statement fails and its
    /// transaction is rolled back, nothing is lost. A value that converts keeps its meaning (text that
    /// is parsed keeps what it spells, not its spelling: `'007'` becomes `7`).
    MayFail,
    /// A value may change without an error: rounded, truncated, a part dropped (a time of day, a
    /// time zone, duplicate JSON keys, trailing spaces). Such a conversion may also fail on values
    /// that do not fit at all. Also every conversion this module does not know.
    LosesValues,
}

impl Class {
    /// The hazard a step converting values this way carries.
    pub(crate) fn hazard(self) -> Option<Hazard> {
        match self {
            Class::Safe => None,
            Class::MayFail => Some(Hazard::MayFail),
            Class::LosesValues => Some(Hazard::DataLoss),
        }
    }
}

/// How `ALTER COLUMN … TYPE` is asked to convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Using {
    /// No `USING`: PostgreSQL's assignment cast, which errors rather than truncates.
    None,
    /// `USING c::t`: there is no assignment cast for the pair.
    Cast,
    /// `USING c::text::t`: from one enum to another (there is no cast between enums).
    ViaText,
}

/// A conversion of one column from one type to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Conversion {
    /// What it can do to the values.
    pub(crate) class: Class,
    /// How to ask for it.
    pub(crate) using: Using,
}

impl Conversion {
    /// The `USING` clause (with its leading space, or empty) converting `column` (quoted) to `to`.
    pub(crate) fn using_clause(&self, column: &str, to: &str) -> String {
        match self.using {
            Using::None => String::new(),
            Using::Cast => format!(" USING {column}::{to}"),
            Using::ViaText => {
                let arr = if to.ends_with("[]") { "[]" } else { "" };
                format!(" USING {column}::text{arr}::{to}")
            }
        }
    }
}

/// The conversion of values of type `from` (a `format_type` name, enums and domains looked up in
/// `from_model`) to type `to` (looked up in `to_model`). The two models differ when a type itself
/// changes: an enum losing labels or a domain getting another base type has the same name on both
/// sides.
pub(crate) fn conversion(from_model: &Model, from: &str, to_model: &Model, to: &str) -> Conversion {
    let (from, _) = resolve(from_model, from, 0);
    let (to, constrained) = resolve(to_model, to, 0);
    let (class, path) = convert(&from, &to);
    Conversion {
        // A domain's CHECK or NOT NULL is checked on every converted value.
        class: if constrained {
            class.max(Class::MayFail)
        } else {
            class
        },
        using: path,
    }
}

/// A type as far as conversions are concerned. Precisions are PostgreSQL's defaults when none is
/// given (6 fractional digits of a second).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ty {
    /// `smallint`, `integer`, `bigint`: the size in bytes.
    Int(u8),
    /// `numeric`, or `numeric(precision,scale)`.
    Numeric(Option<(i32, i32)>),
    /// `real` (4), `double precision` (8).
    Float(u8),
    /// `text`, or `character varying` without a length (the same values).
    Text,
    /// `character varying(n)`.
    VarChar(u32),
    /// `character(n)`; `bpchar` (no length) is `None`. Trailing spaces are not significant.
    Char(Option<u32>),
    Bool,
    Uuid,
    Json,
    Jsonb,
    Date,
    Time {
        precision: u32,
        tz: bool,
    },
    Timestamp {
        precision: u32,
        tz: bool,
    },
    /// `interval`, with its field restriction (`day to second`; empty: none).
    Interval {
        fields: String,
        precision: u32,
    },
    /// An enum of the model, by its labels.
    Enum(Vec<String>),
    Array(Box<Ty>),
    /// Any other type, by name.
    Other(String),
}

/// The type named `name` in `model`: enums and domains are looked up (a domain is its base type);
/// true when a domain on the way has a CHECK or NOT NULL.
fn resolve(model: &Model, name: &str, depth: u32) -> (Ty, bool) {
    if let Some(elem) = name.strip_suffix("[]") {
        let (t, constrained) = resolve(model, elem, depth + 1);
        return (Ty::Array(Box::new(t)), constrained);
    }
    if let Some((_, e)) = model.enums.iter().find(|(q, _)| q.to_string() == name) {
        return (Ty::Enum(e.labels.clone()), false);
    }
    if depth < 8
        && let Some((_, d)) = model.domains.iter().find(|(q, _)| q.to_string() == name)
    {
        let (t, constrained) = resolve(model, &d.base_type, depth + 1);
        return (t, constrained || d.not_null || !d.checks.is_empty());
    }
    (builtin(name), false)
}

/// A built-in type as `format_type` spells it; anything else is [`Ty::Other`].
fn builtin(name: &str) -> Ty {
    let simple = match name {
        "smallint" => Some(Ty::Int(2)),
        "integer" => Some(Ty::Int(4)),
        "bigint" => Some(Ty::Int(8)),
        "real" => Some(Ty::Float(4)),
        "double precision" => Some(Ty::Float(8)),
        "numeric" => Some(Ty::Numeric(None)),
        "text" | "character varying" => Some(Ty::Text),
        "bpchar" => Some(Ty::Char(None)),
        "boolean" => Some(Ty::Bool),
        "uuid" => Some(Ty::Uuid),
        "json" => Some(Ty::Json),
        "jsonb" => Some(Ty::Jsonb),
        "date" => Some(Ty::Date),
        _ => None,
    };
    if let Some(t) = simple {
        return t;
    }
    if let Some(m) = typmod(name, "numeric", "") {
        let mut parts = m.split(',').map(|p| p.trim().parse::<i32>());
        if let (Some(Ok(p)), Some(Ok(s)), None) = (parts.next(), parts.next(), parts.next()) {
            return Ty::Numeric(Some((p, s)));
        }
    }
    if let Some(n) = typmod(name, "character varying", "").and_then(|m| m.parse().ok()) {
        return Ty::VarChar(n);
    }
    if let Some(n) = typmod(name, "character", "").and_then(|m| m.parse().ok()) {
        return Ty::Char(Some(n));
    }
    for (tz, suffix) in [(false, " without time zone"), (true, " with time zone")] {
        if let Some(precision) = precision(name, "time", suffix) {
            return Ty::Time { precision, tz };
        }
        if let Some(precision) = precision(name, "timestamp", suffix) {
            return Ty::Timestamp { precision, tz };
        }
    }
    if let Some(rest) = name.strip_prefix("interval") {
        let (fields, precision) = match rest.find('(') {
            Some(i) => (
                &rest[..i],
                rest[i..]
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')')),
            ),
            None => (rest, Some("6")),
        };
        let fields = fields.trim();
        let known = fields.is_empty()
            || fields.split(' ').all(|w| {
                matches!(
                    w,
                    "year" | "month" | "day" | "hour" | "minute" | "second" | "to"
                )
            });
        if let Some(Ok(precision)) = precision.map(str::parse)
            && known
            && (rest.is_empty() || rest.starts_with(' ') || rest.starts_with('('))
        {
            return Ty::Interval {
                fields: fields.to_string(),
                precision,
            };
        }
    }
    Ty::Other(name.to_string())
}

/// The text between the parentheses of `{head}(…){tail}`.
fn typmod<'a>(name: &'a str, head: &str, tail: &str) -> Option<&'a str> {
    name.strip_prefix(head)?
        .strip_prefix('(')?
        .strip_suffix(tail)?
        .strip_suffix(')')
}

/// The precision of `{head}{tail}` (6) or `{head}(p){tail}`.
fn precision(name: &str, head: &str, tail: &str) -> Option<u32> {
    if name.strip_prefix(head)? == tail {
        return Some(6);
    }
    typmod(name, head, tail)?.parse().ok()
}

/// Decimal digits of the largest value of an integer type.
fn int_digits(bytes: u8) -> i32 {
    match bytes {
        2 => 5,
        4 => 10,
        _ => 19,
    }
}

/// Bits of an integer type, and of a float type's mantissa.
fn int_bits(bytes: u8) -> u32 {
    u32::from(bytes) * 8
}
fn mantissa_bits(bytes: u8) -> u32 {
    if bytes == 4 { 24 } else { 53 }
}

fn is_string(t: &Ty) -> bool {
    matches!(t, Ty::Text | Ty::VarChar(_) | Ty::Char(_))
}

/// Types whose text form never ends in a space (so a bounded string type holds it or errors).
fn plain_output(t: &Ty) -> bool {
    matches!(
        t,
        Ty::Int(_)
            | Ty::Numeric(_)
            | Ty::Float(_)
            | Ty::Bool
            | Ty::Uuid
            | Ty::Date
            | Ty::Time { .. }
            | Ty::Timestamp { .. }
            | Ty::Interval { .. }
    )
}

/// The class of converting `from` to `to`, and whether an assignment cast does it.
fn convert(from: &Ty, to: &Ty) -> (Class, Using) {
    use Class::{LosesValues, MayFail, Safe};
    let safe_if = |ok: bool, otherwise: Class| if ok { Safe } else { otherwise };
    let class = match (from, to) {
        // No cast between enums: through text, which fails on a label the new enum lacks.
        (Ty::Enum(a), Ty::Enum(b)) => {
            return (
                safe_if(a.iter().all(|l| b.contains(l)), MayFail),
                Using::ViaText,
            );
        }
        _ if from == to => Safe,
        // Every type converts to a string type by its text form (an assignment cast). Whether the
        // text fits: `character varying(n)` errors on a longer value, except that trailing spaces
        // beyond n are cut silently; `character(n)` makes trailing spaces insignificant. (A float's
        // text form is exact with the default `extra_float_digits`, 1; a server set lower rounds it.)
        (_, Ty::Text) => Safe,
        (_, Ty::VarChar(n)) => match from {
            Ty::VarChar(m) | Ty::Char(Some(m)) if m <= n => Safe,
            Ty::Char(_) => MayFail,
            Ty::Text | Ty::VarChar(_) => LosesValues,
            f if plain_output(f) => MayFail,
            _ => LosesValues,
        },
        (_, Ty::Char(n)) => match (from, n) {
            (Ty::Char(Some(m)), Some(n)) => safe_if(m <= n, MayFail),
            (Ty::Char(_), None) => Safe,
            (Ty::Text | Ty::VarChar(_), _) => LosesValues,
            (f, None) if plain_output(f) => Safe,
            (f, Some(_)) if plain_output(f) => MayFail,
            _ => LosesValues,
        },
        // From a string: parsed by the type's input function (an explicit cast). Integers,
        // unbounded numeric, booleans, uuids, json and enums take exactly what the text spells or
        // raise an error; numeric(p,s) and floats round, jsonb drops duplicate keys, date drops a
        // time of day, time types round extra fractional digits.
        (f, t) if is_string(f) => {
            let class = match t {
                Ty::Int(_) | Ty::Numeric(None) | Ty::Bool | Ty::Uuid | Ty::Json | Ty::Enum(_) => {
                    MayFail
                }
                _ => LosesValues,
            };
            return (class, Using::Cast);
        }
        (Ty::Array(a), Ty::Array(b)) => return convert(a, b),
        (Ty::Int(a), Ty::Int(b)) => safe_if(b >= a, MayFail),
        (Ty::Int(_), Ty::Numeric(None)) => Safe,
        (Ty::Int(a), Ty::Numeric(Some((p, s)))) => safe_if(p - s >= int_digits(*a), MayFail),
        (Ty::Int(a), Ty::Float(f)) => safe_if(mantissa_bits(*f) >= int_bits(*a), LosesValues),
        (Ty::Numeric(_), Ty::Numeric(None)) => Safe,
        (Ty::Numeric(None), Ty::Numeric(Some(_))) => LosesValues,
        (Ty::Numeric(Some((p1, s1))), Ty::Numeric(Some((p2, s2)))) => {
            if s2 < s1 {
                LosesValues
            } else {
                safe_if(p2 - s2 >= p1 - s1, MayFail)
            }
        }
        // Whole numbers: at most p - s digits.
        (Ty::Numeric(Some((p, s))), Ty::Int(b)) if *s <= 0 => {
            safe_if(p - s < int_digits(*b), MayFail)
        }
        // Rounded to a whole number, or to the nearest float.
        (Ty::Numeric(_), Ty::Int(_) | Ty::Float(_)) => LosesValues,
        // Rounded to a whole number; float to numeric keeps only 15 (6) significant digits.
        (Ty::Float(_), Ty::Int(_) | Ty::Numeric(_)) => LosesValues,
        (Ty::Float(a), Ty::Float(b)) => safe_if(b >= a, LosesValues),
        // jsonb keeps the last of duplicate keys (and normalizes the text).
        (Ty::Json, Ty::Jsonb) => LosesValues,
        (Ty::Jsonb, Ty::Json) => Safe,
        (Ty::Date, Ty::Timestamp { .. }) => Safe,
        // Same zone-ness: only a lower precision rounds. Dropping the time zone keeps the wall time
        // of the session's time zone; adding one reads the wall time in it, and a time that does
        // not exist there (a daylight-saving gap) moves.
        (
            Ty::Timestamp {
                precision: p1,
                tz: z1,
            },
            Ty::Timestamp {
                precision: p2,
                tz: z2,
            },
        ) => safe_if(z1 == z2 && p2 >= p1, LosesValues),
        (Ty::Timestamp { .. }, Ty::Date) => LosesValues,
        // (No cast from timestamp without time zone to time with time zone.)
        (Ty::Timestamp { tz: z1, .. }, Ty::Time { tz: z2, .. }) if *z1 || !z2 => LosesValues,
        // time to time with time zone adds the session's offset and keeps the time of day.
        (
            Ty::Time {
                precision: p1,
                tz: z1,
            },
            Ty::Time {
                precision: p2,
                tz: z2,
            },
        ) => safe_if(p2 >= p1 && (z1 == z2 || !z1), LosesValues),
        (
            Ty::Time {
                precision: p1,
                tz: false,
            },
            Ty::Interval {
                fields,
                precision: p2,
            },
        ) => safe_if(fields.is_empty() && p2 >= p1, LosesValues),
        (
            Ty::Interval {
                fields: f1,
                precision: p1,
            },
            Ty::Interval {
                fields: f2,
                precision: p2,
            },
        ) => safe_if((f2.is_empty() || f1 == f2) && p2 >= p1, LosesValues),
        (Ty::Interval { .. }, Ty::Time { tz: false, .. }) => LosesValues,
        // Not known here: assume the worst, and keep the explicit cast.
        _ => return (LosesValues, Using::Cast),
    };
    (class, Using::None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    use Class::{LosesValues, MayFail, Safe};

    /// A model with an enum `public.mood` (happy, sad), a bigger `public.mood2` (happy, sad, meh), a
    /// domain `public.posint` (integer, CHECK) and `public.plain` (text, no constraint).
    fn types() -> Model {
        let mut m = model();
        m.enums
            .insert(qn("public.mood"), enum_type(&["happy", "sad"]));
        m.enums
            .insert(qn("public.mood2"), enum_type(&["happy", "sad", "meh"]));
        let mut posint = domain("integer");
        posint
            .checks
            .insert("pos".into(), "CHECK ((VALUE > 0))".into());
        m.domains.insert(qn("public.posint"), posint);
        m.domains.insert(qn("public.plain"), domain("text"));
        m
    }

    fn conv(from: &str, to: &str) -> Conversion {
        let m = types();
        conversion(&m, from, &m, to)
    }

    #[test]
    fn classification_table() {
        use Using::{Cast, ViaText};
        let none = Using::None;
        #[rustfmt::skip]
        let table: &[(&str, &str, Class, Using)] = &[
            // strings
            ("text", "character varying(3)", LosesValues, none),
            ("character varying(10)", "character varying(3)", LosesValues, none),
            ("character varying(3)", "character varying(10)", Safe, none),
            ("character varying(3)", "text", Safe, none),
            ("character varying", "text", Safe, none),
            ("text", "character varying", Safe, none),
            ("character(10)", "character(3)", MayFail, none),
            ("character(3)", "character(10)", Safe, none),
            ("character(3)", "character varying(3)", Safe, none),
            ("character(10)", "character varying(3)", MayFail, none),
            ("character(3)", "text", Safe, none),
            ("text", "character(10)", LosesValues, none),
            ("character varying(3)", "bpchar", LosesValues, none),
            ("integer", "character varying(3)", MayFail, none),
            ("integer", "text", Safe, none),
            ("public.mood", "text", Safe, none),
            ("public.mood", "character varying(10)", LosesValues, none),
            ("jsonb", "character varying(10)", LosesValues, none),
            ("public.vector(3)", "text", Safe, none),
            // parsing text
            ("text", "integer", MayFail, Cast),
            ("character varying(20)", "bigint", MayFail, Cast),
            ("text", "numeric", MayFail, Cast),
            ("text", "numeric(10,2)", LosesValues, Cast),
            ("text", "double precision", LosesValues, Cast),
            ("text", "uuid", MayFail, Cast),
            ("text", "boolean", MayFail, Cast),
            ("text", "json", MayFail, Cast),
            ("text", "jsonb", LosesValues, Cast),
            ("text", "public.mood", MayFail, Cast),
            ("text[]", "public.mood[]", MayFail, Cast),
            ("text", "date", LosesValues, Cast),
            ("text", "timestamp with time zone", LosesValues, Cast),
            ("text", "public.citext", LosesValues, Cast),
            // integers and numbers
            ("integer", "bigint", Safe, none),
            ("smallint", "integer", Safe, none),
            ("bigint", "integer", MayFail, none),
            ("integer", "smallint", MayFail, none),
            ("integer", "numeric", Safe, none),
            ("integer", "numeric(10,0)", Safe, none),
            ("integer", "numeric(12,2)", Safe, none),
            ("integer", "numeric(9,0)", MayFail, none),
            ("bigint", "numeric(18,0)", MayFail, none),
            ("smallint", "real", Safe, none),
            ("integer", "real", LosesValues, none),
            ("integer", "double precision", Safe, none),
            ("bigint", "double precision", LosesValues, none),
            ("numeric(10,2)", "numeric(12,2)", Safe, none),
            ("numeric(10,2)", "numeric", Safe, none),
            ("numeric(10,2)", "numeric(10,0)", LosesValues, none),
            ("numeric(10,2)", "numeric(10,3)", MayFail, none),
            ("numeric(10,2)", "numeric(9,2)", MayFail, none),
            ("numeric", "numeric(10,2)", LosesValues, none),
            ("numeric(2,-3)", "numeric(5,0)", Safe, none),
            ("numeric", "integer", LosesValues, none),
            ("numeric(10,2)", "bigint", LosesValues, none),
            ("numeric(9,0)", "integer", Safe, none),
            ("numeric(10,0)", "integer", MayFail, none),
            ("numeric", "double precision", LosesValues, none),
            ("double precision", "integer", LosesValues, none),
            ("real", "bigint", LosesValues, none),
            ("double precision", "numeric", LosesValues, none),
            ("double precision", "real", LosesValues, none),
            ("real", "double precision", Safe, none),
            // json
            ("json", "jsonb", LosesValues, none),
            ("jsonb", "json", Safe, none),
            // dates and times
            ("timestamp with time zone", "date", LosesValues, none),
            ("timestamp without time zone", "date", LosesValues, none),
            ("timestamp with time zone", "timestamp without time zone", LosesValues, none),
            ("timestamp without time zone", "timestamp with time zone", LosesValues, none),
            ("timestamp(6) without time zone", "timestamp(0) without time zone", LosesValues, none),
            ("timestamp without time zone", "timestamp(3) without time zone", LosesValues, none),
            ("timestamp(3) with time zone", "timestamp with time zone", Safe, none),
            ("timestamp with time zone", "time without time zone", LosesValues, none),
            ("date", "timestamp without time zone", Safe, none),
            ("date", "timestamp(0) with time zone", Safe, none),
            ("time(6) without time zone", "time(0) without time zone", LosesValues, none),
            ("time(3) without time zone", "time without time zone", Safe, none),
            ("time without time zone", "time with time zone", Safe, none),
            ("time with time zone", "time without time zone", LosesValues, none),
            ("time without time zone", "interval", Safe, none),
            ("interval", "interval(0)", LosesValues, none),
            ("interval(2)", "interval", Safe, none),
            ("interval", "interval year to month", LosesValues, none),
            ("interval day to second(2)", "interval", Safe, none),
            ("interval", "time without time zone", LosesValues, none),
            // enums: through text, failing on a label the new one lacks
            ("public.mood", "public.mood2", Safe, ViaText),
            ("public.mood2", "public.mood", MayFail, ViaText),
            ("public.mood2[]", "public.mood[]", MayFail, ViaText),
            // domains: their base type, and their checks
            ("integer", "public.posint", MayFail, none),
            ("bigint", "public.posint", MayFail, none),
            ("public.posint", "bigint", Safe, none),
            ("public.posint", "smallint", MayFail, none),
            ("text", "public.plain", Safe, none),
            ("public.plain", "character varying(3)", LosesValues, none),
            ("text", "public.posint", MayFail, Cast),
            // arrays: their elements
            ("integer[]", "bigint[]", Safe, none),
            ("text[]", "character varying(3)[]", LosesValues, none),
            ("bigint[]", "integer[]", MayFail, none),
            ("text[]", "integer[]", MayFail, Cast),
            ("integer[]", "text", Safe, none),
            ("integer", "integer[]", LosesValues, Cast),
            // unknown: the worst, with the explicit cast
            ("public.vector(3)", "public.vector(4)", LosesValues, Cast),
            ("integer", "boolean", LosesValues, Cast),
            ("inet", "cidr", LosesValues, Cast),
            ("bytea", "uuid", LosesValues, Cast),
            ("timestamp without time zone", "time with time zone", LosesValues, Cast),
        ];
        let mut wrong = Vec::new();
        for (from, to, class, using) in table {
            let got = conv(from, to);
            if got.class != *class || got.using != *using {
                wrong.push(format!(
                    "{from} -> {to}: got {:?}/{:?}, want {class:?}/{using:?}",
                    got.class, got.using
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn type_names_parse_as_format_type_prints_them() {
        let cases: &[(&str, Ty)] = &[
            ("integer", Ty::Int(4)),
            ("numeric(10,2)", Ty::Numeric(Some((10, 2)))),
            ("numeric(2,-3)", Ty::Numeric(Some((2, -3)))),
            ("character varying(3)", Ty::VarChar(3)),
            ("character varying", Ty::Text),
            ("character(1)", Ty::Char(Some(1))),
            ("bpchar", Ty::Char(None)),
            (
                "timestamp(3) with time zone",
                Ty::Timestamp {
                    precision: 3,
                    tz: true,
                },
            ),
            (
                "timestamp without time zone",
                Ty::Timestamp {
                    precision: 6,
                    tz: false,
                },
            ),
            (
                "time(0) without time zone",
                Ty::Time {
                    precision: 0,
                    tz: false,
                },
            ),
            (
                "interval day to second(2)",
                Ty::Interval {
                    fields: "day to second".into(),
                    precision: 2,
                },
            ),
            (
                "interval(3)",
                Ty::Interval {
                    fields: String::new(),
                    precision: 3,
                },
            ),
            ("public.vector(384)", Ty::Other("public.vector(384)".into())),
            ("intervalish", Ty::Other("intervalish".into())),
            ("\"char\"", Ty::Other("\"char\"".into())),
            ("numeric(10", Ty::Other("numeric(10".into())),
        ];
        for (name, ty) in cases {
            assert_eq!(&builtin(name), ty, "{name}");
        }
        let m = types();
        assert_eq!(
            resolve(&m, "character varying(3)[]", 0),
            (Ty::Array(Box::new(Ty::VarChar(3))), false)
        );
        assert_eq!(resolve(&m, "public.posint", 0), (Ty::Int(4), true));
        assert_eq!(
            resolve(&m, "public.mood[]", 0),
            (
                Ty::Array(Box::new(Ty::Enum(vec!["happy".into(), "sad".into()]))),
                false
            )
        );
    }

    #[test]
    fn quoted_user_types_are_found_by_their_printed_name() {
        let mut m = model();
        m.enums.insert(qn("My Schema.Mood"), enum_type(&["a", "b"]));
        let mut fewer = m.clone();
        fewer.enums.insert(qn("My Schema.Mood"), enum_type(&["a"]));
        let name = "\"My Schema\".\"Mood\"";
        let c = conversion(&m, name, &fewer, name);
        assert_eq!((c.class, c.using), (MayFail, Using::ViaText));
        let c = conversion(&fewer, name, &m, name);
        assert_eq!((c.class, c.using), (Safe, Using::ViaText));
    }

    #[test]
    fn using_clauses() {
        let c = |class, using| Conversion { class, using };
        assert_eq!(c(Safe, Using::None).using_clause("n", "bigint"), "");
        assert_eq!(
            c(MayFail, Using::Cast).using_clause("\"N\"", "integer"),
            " USING \"N\"::integer"
        );
        assert_eq!(
            c(MayFail, Using::ViaText).using_clause("m", "public.mood[]"),
            " USING m::text[]::public.mood[]"
        );
        assert_eq!(MayFail.hazard(), Some(Hazard::MayFail));
        assert_eq!(LosesValues.hazard(), Some(Hazard::DataLoss));
        assert_eq!(Safe.hazard(), None);
    }
}
