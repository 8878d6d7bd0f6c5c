//! Names and labels of the Docker objects the tests make, and removal of those a killed run left.
//!
//! A container or network is named `vmtd-<pid>-<tag>-<n>-<role>`: the test process's pid (unique
//! among live processes of one pid namespace), a tag hashed from the worktree and the process's
//! identity (so runs from other worktrees or pid namespaces differ too), a per-process counter and
//! what it is for. Each carries the labels `io.vminit.test=docker` and
//! `io.vminit.test.owner=<pid namespace>:<pid>:<start time>`: a run removes the objects whose owner
//! is gone, and only those it can judge (in its own pid namespace, the pid no longer running the
//! process that made them), so a live run's objects are never touched.

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::fs;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use super::super::cmd::run;

/// The label every object of these tests carries (`docker ps --filter label=…` finds them all).
pub const LABEL: &str = "io.vminit.test=docker";
/// The label key naming the process that made an object.
const OWNER_KEY: &str = "io.vminit.test.owner";
const NAME_PREFIX: &str = "vmtd";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique Docker name for `role`: `vmtd-<pid>-<tag>-<n>-<role>`.
pub fn unique_name(role: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let me = Owner::this_process();
    format!("{NAME_PREFIX}-{}-{}-{n}-{role}", me.pid, me.tag())
}

/// `--label` flags for `docker create`/`run`/`network create`: the tests' label and our owner.
pub fn label_flags() -> Vec<String> {
    let owner = format!("{OWNER_KEY}={}", owner_label());
    vec!["--label".into(), LABEL.into(), "--label".into(), owner]
}

/// The value of our owner label: `<pid namespace>:<pid>:<start time>`.
pub fn owner_label() -> String {
    Owner::this_process().to_string()
}

/// A process that made Docker objects: it is still the same process while `pid` runs in the
/// same pid namespace with the same start time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    /// The pid namespace's inode (`readlink /proc/self/ns/pid` → `pid:[4026531836]`).
    pidns: u64,
    pid: u32,
    /// The process's start time, in clock ticks after boot (`/proc/PID/stat`, field 22).
    start: u64,
}

impl Owner {
    fn this_process() -> &'static Owner {
        static ME: OnceLock<Owner> = OnceLock::new();
        ME.get_or_init(|| {
            let pid = std::process::id();
            Owner {
                pidns: our_pid_namespace().expect("readlink /proc/self/ns/pid"),
                pid,
                start: start_time(pid).expect("our own /proc/PID/stat"),
            }
        })
    }

    /// Four hex digits that tell this process from one with the same pid elsewhere.
    fn tag(&self) -> String {
        let mut hasher = DefaultHasher::new();
        env!("CARGO_MANIFEST_DIR").hash(&mut hasher);
        self.to_string().hash(&mut hasher);
        format!("{:04x}", hasher.finish() & 0xffff)
    }

    /// `PIDNS:PID:START`, as [`Owner`]'s `Display` writes it.
    fn parse(text: &str) -> Option<Owner> {
        let mut parts = text.split(':');
        let owner = Owner {
            pidns: parts.next()?.parse().ok()?,
            pid: parts.next()?.parse().ok()?,
            start: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(owner)
    }

    /// True when the process is known to have ended: it lived in our pid namespace and its pid
    /// is free or now runs another process. One in another namespace cannot be judged: false.
    fn is_gone(&self) -> bool {
        self.pidns == Owner::this_process().pidns && start_time(self.pid) != Some(self.start)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.pidns, self.pid, self.start)
    }
}

fn our_pid_namespace() -> Option<u64> {
    let link = fs::read_link("/proc/self/ns/pid").ok()?;
    let link = link.to_string_lossy();
    link.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`), `None` if there is none.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields after it do not.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// True when the object `name` with owner label `owner` was left by a run that is gone. Objects
/// without an owner label come from older test code that named them `vmtd-<pid>-<n>-<role>`:
/// those are judged by the pid alone, as that code did.
pub fn is_stale(name: &str, owner: &str) -> bool {
    if let Some(owner) = Owner::parse(owner) {
        return owner.is_gone();
    }
    let mut parts = name.split('-');
    parts.next() == Some(NAME_PREFIX)
        && parts
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|pid| {
                pid != std::process::id() && !fs::exists(format!("/proc/{pid}")).unwrap_or(true)
            })
}

/// Each kind of object these tests make: what it is called, the command that lists it, its name
/// in `--format`, and the command that removes one (containers first: networks in use stay).
const KINDS: [(&str, &str, &str, &str); 2] = [
    ("container", "docker ps -a", "{{.Names}}", "docker rm -f"),
    (
        "network",
        "docker network ls",
        "{{.Name}}",
        "docker network rm",
    ),
];

/// Removes the containers, then the networks, of earlier runs of these tests whose process is
/// gone.
pub fn reap_stale() {
    let filter = format!("label={LABEL}");
    for (kind, list, name_field, remove) in KINDS {
        let format = format!("{name_field}\t{{{{.Label \"{OWNER_KEY}\"}}}}");
        let mut argv: Vec<&str> = list.split(' ').collect();
        argv.extend(["--filter", &filter, "--format", &format]);
        for line in run(&argv).stdout.lines() {
            let (name, owner) = line.split_once('\t').unwrap_or((line, ""));
            if is_stale(name, owner) {
                eprintln!("docker tests: removing {kind} {name} left by an earlier run");
                let mut argv: Vec<&str> = remove.split(' ').collect();
                argv.push(name);
                run(&argv);
            }
        }
    }
}
