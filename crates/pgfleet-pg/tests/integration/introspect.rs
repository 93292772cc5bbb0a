//! Introspection tests (being written).
