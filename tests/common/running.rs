//! What the tests do with a running test guest: wait for its report, type a command at its
//! shell and wait for what the guest prints, stop it as `docker stop` does.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::{GuestReport, Vminit};

/// TCG boots the test guest to its report in a few seconds; parallel tests share two cores.
const BOOT: Duration = Duration::from_secs(120);
/// How long a typed command may take to print what the test waits for.
const COMMAND: Duration = Duration::from_secs(30);
/// A clean stop under TCG on a loaded machine (Docker gives 10 s; the stop budget is vminit's,
/// tested on its own in the lifecycle tests).
const STOP: Duration = Duration::from_secs(30);

/// Waits for the guest's report and parses it.
pub fn report(vm: &Vminit) -> GuestReport {
    vm.expect_console("GUEST-REPORT done", BOOT);
    GuestReport::parse(&vm.console().text()).expect("a complete guest report")
}

/// Types `command` at the guest's shell and waits for `expect` in what follows. The console
/// echoes what is typed, so `expect` must be text only the guest's work produces
/// (`echo PING-$((40+2))` waiting for `PING-42`), never a part of `command`.
pub fn guest_run(vm: &Vminit, command: &str, expect: &str) {
    assert!(
        !command.contains(expect),
        "`{expect}` is in the command `{command}` itself, so its echo would match: wait for \
         text the guest computes, such as `echo OK-$((40+2))` and `OK-42`"
    );
    vm.expect_console("GUEST-READY", BOOT);
    let from = vm.console().len();
    vm.type_console(&format!("{command}\n"));
    vm.expect_console_from(from, expect, COMMAND);
}

/// `docker stop`: SIGTERM, a clean guest poweroff, exit 0.
pub fn stop(vm: &Vminit) {
    vm.kill(Signal::SIGTERM);
    let status = vm.expect_exit(STOP);
    assert_eq!(status.code(), Some(0), "exit status\n{}", vm.tails());
}
