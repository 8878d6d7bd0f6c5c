/* A QMP socket that never answers, for the stand-in QEMU: listens on the Unix socket given as
 * argv[1] with QEMU's backlog of 1 and never accepts, like a QEMU whose main loop is held up
 * (for instance by `-serial tcp:...,server=on` waiting for its client). Runs until killed. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, argv[1], sizeof addr.sun_path - 1);
    unlink(argv[1]);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) || listen(fd, 1)) {
        perror("stuck_qmp");
        return 1;
    }
    for (;;) pause();
}
