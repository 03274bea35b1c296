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

// clippy 1.95 would move `peer`'s "send the start of a line, stop if the
// other side closed" into a match guard: a guard with a side effect (bytes
// on the wire) reads worse than the plain `if`.
#[allow(clippy::collapsible_match)]
pub mod peer;
pub mod strategies;
