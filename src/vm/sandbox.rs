//! Probes whether passt's sandbox can be built in this container, before user mode picks
//! passt or QEMU's own user networking (slirp).
#![allow(unsafe_code)]

use nix::errno::Errno;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};

/// Whether passt's sandbox can be built here: its first steps (a user namespace; mount, IPC,
/// UTS and PID namespaces in it; the root made unbindable), tried in a child that exits at
/// once. A container's seccomp profile (Docker's default, Kubernetes' `RuntimeDefault`)
/// refuses `unshare` to a process without CAP_SYS_ADMIN, and some hosts forbid user
/// namespaces (`user.max_user_namespaces=0`) or mounts in them (AppArmor).
pub fn probe_sandbox() -> std::result::Result<(), String> {
    const STEPS: [&str; 3] = [
        "unshare(CLONE_NEWUSER)",
        "unshare(CLONE_NEWNS|CLONE_NEWIPC|CLONE_NEWUTS|CLONE_NEWPID)",
        "mount --make-runbindable /",
    ];
    // SAFETY: the child only makes raw system calls (unshare, mount, _exit) on constants,
    // all async-signal-safe, and never returns into Rust code.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            // SAFETY: plain system calls on constant arguments; `_exit` ends the child
            // without running the parent's atexit handlers or flushing its buffers.
            unsafe {
                let failed = |step: i32| {
                    let errno = *libc::__errno_location();
                    libc::_exit(step << 6 | (errno & 63))
                };
                if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                    failed(1);
                }
                let flags = libc::CLONE_NEWNS
                    | libc::CLONE_NEWIPC
                    | libc::CLONE_NEWUTS
                    | libc::CLONE_NEWPID;
                if libc::unshare(flags) != 0 {
                    failed(2);
                }
                let root = c"/".as_ptr();
                let flags = libc::MS_UNBINDABLE | libc::MS_REC;
                if libc::mount(
                    c"".as_ptr(),
                    root,
                    std::ptr::null(),
                    flags,
                    std::ptr::null(),
                ) != 0
                {
                    failed(3);
                }
                libc::_exit(0)
            }
        }
        Ok(ForkResult::Parent { child }) => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(WaitStatus::Exited(_, code)) => {
                let step = STEPS.get((code >> 6) as usize - 1).unwrap_or(&"a step");
                Err(format!("{step}: {}", Errno::from_raw(code & 63).desc()))
            }
            other => Err(format!("the probe child ended as {other:?}")),
        },
        Err(e) => Err(format!("fork: {e}")),
    }
}
