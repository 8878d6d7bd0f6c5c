/* The first program vminit executes as "QEMU" in the lifecycle tests: records its signal mask,
 * ignored signals and open descriptors exactly as vminit left them (a shell would change them
 * before it could look), then execs the stand-in script with the same arguments. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *log = getenv("STANDIN_LOG");
    const char *script = getenv("STANDIN_SCRIPT");
    if (!log || !script) return 99;
    /* Collect the descriptors before opening anything ourselves. */
    char fds[4096] = "";
    DIR *dir = opendir("/proc/self/fd");
    int dfd = dir ? dirfd(dir) : -1;
    for (struct dirent *e; dir && (e = readdir(dir));) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == dfd) continue;
        char path[64], target[256];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        target[n < 0 ? 0 : n] = 0;
        char line[400];
        snprintf(line, sizeof line, "fd %s %s\n", e->d_name, target);
        strncat(fds, line, sizeof fds - strlen(fds) - 1);
    }
    if (dir) closedir(dir);
    FILE *out = fopen(log, "a");
    FILE *status = fopen("/proc/self/status", "r");
    if (!out || !status) return 98;
    char line[256];
    while (fgets(line, sizeof line, status))
        if (!strncmp(line, "SigBlk:", 7) || !strncmp(line, "SigIgn:", 7)) fputs(line, out);
    fputs(fds, out);
    fclose(status);
    fclose(out);
    argv[0] = (char *)script;
    execv(script, argv);
    return 97;
}
