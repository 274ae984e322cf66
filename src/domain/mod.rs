//! Rules with no I/O.
pub mod routing;
