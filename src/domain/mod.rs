//! Rules with no I/O.
pub mod articles;
pub mod moderation;
pub mod routing;
