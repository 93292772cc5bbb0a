//! The operators' listener of `pgfleet serve` against a real fleet over real sockets: the
//! management API (`api`) and the dashboard (`dashboard`, also in a real browser). One test binary:
//! it links once.

#[path = "../common/mod.rs"]
mod common;

mod api;
mod dashboard;
