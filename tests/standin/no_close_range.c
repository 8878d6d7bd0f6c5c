/* Runs a program the way an old kernel or an old container runtime's seccomp profile would:
 * close_range(2) fails with the errno named in argv[1] (ENOSYS or EPERM; "none" installs no
 * filter). Before it execs argv[2..], it opens the file $CANARY without O_CLOEXEC, as a
 * descriptor PID 1 inherited from whoever started it, so a test can check that it does not
 * leak into the programs vminit starts. */
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_close_range
#define __NR_close_range 436
#endif

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *canary = getenv("CANARY");
    if (canary && open(canary, O_RDONLY) < 0) {
        perror("canary");
        return 3;
    }
    if (strcmp(argv[1], "none") != 0) {
        int err = strcmp(argv[1], "EPERM") == 0 ? EPERM : ENOSYS;
        struct sock_filter filter[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_close_range, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (err & SECCOMP_RET_DATA)),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = {.len = sizeof filter / sizeof filter[0], .filter = filter};
        /* Without CAP_SYS_ADMIN (a container's bounding set) a filter needs no_new_privs. */
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
            perror("seccomp");
            return 4;
        }
    }
    execv(argv[2], argv + 2);
    perror("execv");
    return 5;
}
