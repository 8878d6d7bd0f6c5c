/*
 * bench-stamp: the clock readings of the vminit bench (bench/run.sh builds it with gcc -static).
 *
 * Three roles, chosen by argv:
 *
 *   bench-stamp exec FILE PROG [ARGS...]
 *       Appends "MONO_NS REAL_NS" to FILE, then execv()s PROG with ARGS (argv[0] = PROG).
 *       Run as the container's PID 1 right before it becomes vminit (or the reference script,
 *       or plain QEMU): FILE then holds the start time of what is measured.
 *
 *   bench-stamp lines
 *       Copies stdin to stdout, each line prefixed with "MONO_NS " (the time it was read).
 *       vminit's stderr goes through it: the log becomes a phase timeline at no cost to vminit.
 *
 *   qemu-standin [QEMU ARGS...]          (any argv[0] whose name ends in "qemu-standin")
 *       The stand-in QEMU: appends "MONO_NS REAL_NS nics=N chardev_fds=M" to $BENCH_QEMU_STAMP
 *       (N = the "-netdev tap,...,fd=F" arguments, M = how many of those F are open character
 *       devices, i.e. really inherited taps), then execv()s $BENCH_REAL_QEMU with the same
 *       arguments when that is set (a timestamping wrapper), else exits 0 (setup latency: the
 *       measured interval ends when QEMU would start).
 *
 * CLOCK_MONOTONIC is the same in every namespace the bench makes (no time namespaces), so
 * readings taken inside the container and outside compare directly.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static long long ns(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Appends one line to path with a single write (O_APPEND), so concurrent writers do not mix. */
static void append(const char *path, const char *line)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "bench-stamp: open %s: %s\n", path, strerror(errno));
		return;
	}
	if (write(fd, line, strlen(line)) < 0)
		fprintf(stderr, "bench-stamp: write %s: %s\n", path, strerror(errno));
	close(fd);
}

static int do_exec(int argc, char **argv)
{
	char line[128];
	if (argc < 4) {
		fprintf(stderr, "usage: bench-stamp exec FILE PROG [ARGS...]\n");
		return 2;
	}
	long long mono = ns(CLOCK_MONOTONIC), real = ns(CLOCK_REALTIME);
	snprintf(line, sizeof line, "%lld %lld\n", mono, real);
	append(argv[2], line);
	execv(argv[3], argv + 3);
	fprintf(stderr, "bench-stamp: exec %s: %s\n", argv[3], strerror(errno));
	return 127;
}

static int do_lines(void)
{
	static char buf[65536];
	char prefix[32];
	int at_line_start = 1;
	for (;;) {
		ssize_t n = read(0, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return 0;
		int plen = snprintf(prefix, sizeof prefix, "%lld ", ns(CLOCK_MONOTONIC));
		ssize_t start = 0;
		for (ssize_t i = 0; i < n; i++) {
			if (at_line_start) {
				if (write(1, prefix, plen) < 0)
					return 1;
				at_line_start = 0;
			}
			if (buf[i] == '\n') {
				if (write(1, buf + start, i + 1 - start) < 0)
					return 1;
				start = i + 1;
				at_line_start = 1;
			}
		}
		if (start < n && write(1, buf + start, n - start) < 0)
			return 1;
	}
}

/* Counts "fd=F" options of -netdev arguments and how many F are open character devices. */
static int do_standin(int argc, char **argv)
{
	long long mono = ns(CLOCK_MONOTONIC), real = ns(CLOCK_REALTIME);
	int nics = 0, chr = 0;
	for (int i = 1; i + 1 < argc; i++) {
		if (strcmp(argv[i], "-netdev") != 0)
			continue;
		char *fd = strstr(argv[i + 1], "fd=");
		if (!fd)
			continue;
		nics++;
		struct stat st;
		if (fstat(atoi(fd + 3), &st) == 0 && S_ISCHR(st.st_mode))
			chr++;
	}
	const char *file = getenv("BENCH_QEMU_STAMP");
	if (file) {
		char line[160];
		snprintf(line, sizeof line, "%lld %lld nics=%d chardev_fds=%d\n", mono, real, nics, chr);
		append(file, line);
	}
	const char *real_qemu = getenv("BENCH_REAL_QEMU");
	if (real_qemu && *real_qemu) {
		argv[0] = (char *)real_qemu;
		execv(real_qemu, argv);
		fprintf(stderr, "qemu-standin: exec %s: %s\n", real_qemu, strerror(errno));
		return 127;
	}
	return 0;
}

int main(int argc, char **argv)
{
	size_t len = strlen(argv[0]);
	if (len >= 12 && strcmp(argv[0] + len - 12, "qemu-standin") == 0)
		return do_standin(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "exec") == 0)
		return do_exec(argc, argv);
	if (argc == 2 && strcmp(argv[1], "lines") == 0)
		return do_lines();
	fprintf(stderr, "usage: bench-stamp exec FILE PROG [ARGS...] | bench-stamp lines | qemu-standin ARGS...\n");
	return 2;
}
