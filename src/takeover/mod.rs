//! What happens to each attached NIC, decided without touching anything: the plan of the
//! takeover (both families), the container's new door addresses, and the identity record that
//! lets a later run put everything back.
//!
//! Pure, every file: `plan` (config + namespace -> the NICs and the steps), `plan6` (the IPv6
//! half), `identity` (the record kept in link aliases; recovery after a killed run), `slot`
//! (a guest NIC's place and every name made from it), `tapjoin` (the tc filters of the tap
//! datapath).
//!
//! Imports `net` and `pid1` only.

pub mod identity;
pub mod plan;
pub mod plan6;
pub mod slot;
pub mod tapjoin;
