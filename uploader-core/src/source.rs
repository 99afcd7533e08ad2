//! Sources: where bodies come from. Two sources feed the one life cycle of the (private)
//! `transfer` module:
//!
//! * [`file`](mod@file): a file on disk, stat-ed and sniffed once, read range by range (each
//!   range read once, checksummed while reading), checked unchanged before it is reported
//!   stored;
//! * [`stream`]: a byte stream that arrives over the network (a daemon's request body), cut
//!   into parts under the byte budget and sniffed from its first bytes.
//!
//! Both plan through [`crate::plan::Plan`] and end in the same `transfer::outcome`.

pub mod file;
pub mod stream;
