//! What makes vminit a PID 1: the supervisor's decisions, its signalfd loop, starting children
//! with a clean signal state and only their descriptors, and one vminit per namespace.
//!
//! Pure: `policy` (the supervisor's decisions: `policy::stop`, the stop sequence and the exit
//! status; `policy::helper`, one helper child's restarts; `policy::hotplug`, when to follow
//! network changes; `policy` itself routes events to them), `children` (which child a pid
//! is), `health` (what `vminit health` concludes from the guest's answers).
//! Touch the system: `supervise` (the signalfd loop), `spawn` (fork + exec, privileges
//! dropped), `lock` (the abstract socket `@vminit`).
//!
//! Imports only `net` (the change notifications the loop polls).

pub mod children;
pub mod health;
pub mod lock;
pub mod policy;
pub mod spawn;
pub mod supervise;
