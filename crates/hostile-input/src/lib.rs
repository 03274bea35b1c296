//! Test support for "every parser of outside input survives hostile bytes":
//! what a hostile file, answer or peer sends, in one place so that every
//! crate's tests attack its parsers the same way.
//!
//! - [`peer`]: loopback TCP peers that misbehave (stall mid-line, trickle,
//!   send an endless line, never read, close at a chosen step) and report
//!   how much the other side took before it gave up.
//! - [`strategies`]: proptest strategies for hostile files and answers
//!   (nasty values, hostile text and bytes, line mutations of a valid file)
//!   and the time bound on one parse.
//!
//! Only ever a dev-dependency.

pub mod peer;
pub mod strategies;
