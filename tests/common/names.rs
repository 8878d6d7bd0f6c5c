//! Unique names, so that tests in parallel threads and concurrent test runs never collide.
//!
//! An id is `vmt` + the process id modulo 1000 (three digits) + a per-process counter, e.g.
//! `vmt4217`: short enough to build interface names of at most 15 bytes from it. Namespace names
//! are global, so they also carry the full process id (`vmt4217-ctr-12345`): a run that was killed
//! before its destructors ran leaves namespaces whose process is gone, and the first id of the
//! next run deletes them.

use std::path::Path;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

use super::cmd::run;

static COUNTER: AtomicU32 = AtomicU32::new(0);
static REAP_STALE: Once = Once::new();

/// The longest interface name Linux accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// A new id, unique in this process and very likely among concurrent processes.
pub fn unique_id() -> String {
    REAP_STALE.call_once(reap_stale_namespaces);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("vmt{:03}{n}", std::process::id() % 1000)
}

/// A network namespace name for `id` in `role` (`br`, `peer`, `ctr`), with our full pid.
pub fn netns_name(id: &str, role: &str) -> String {
    format!("{id}-{role}-{}", std::process::id())
}

/// An interface name made of `id` and `suffix`; panics if Linux would refuse it.
pub fn ifname(id: &str, suffix: &str) -> String {
    let name = format!("{id}{suffix}");
    assert!(
        name.len() <= IFNAME_MAX,
        "interface name {name} is longer than {IFNAME_MAX}"
    );
    name
}

/// Deletes namespaces named by [`netns_name`] (`vmtNNNk-ROLE-PID`) whose process no longer exists:
/// a killed run left them.
fn reap_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = stale_owner(&name) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            // ip netns del NAME
            let _ = run(&["ip", "netns", "del", &name]);
        }
    }
}

/// The pid in a name made by [`netns_name`], or `None` for any other name.
fn stale_owner(name: &str) -> Option<u32> {
    let mut parts = name.split('-');
    let (id, role, pid) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = id.strip_prefix("vmt")?;
    let ours = parts.next().is_none()
        && digits.len() > 3
        && digits.bytes().all(|b| b.is_ascii_digit())
        && matches!(role, "br" | "peer" | "ctr");
    ours.then(|| pid.parse().ok()).flatten()
}
