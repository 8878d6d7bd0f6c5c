/* serve PORT: the test guest's TCP and UDP service on PORT (busybox-static has neither a UDP
 * server nor nc -u). A TCP client reads "GUEST-TCP PORT\n"; a UDP datagram is answered with
 * "GUEST-UDP PORT " and the datagram. Runs until killed. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int bound(int type, int port)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port) };
	int fd = socket(AF_INET6, type, 0), no = 0, yes = 1;

	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &no, sizeof(no));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || (type == SOCK_STREAM && listen(fd, 16)))
		return -1;
	return fd;
}

int main(int argc, char **argv)
{
	int port = argc > 1 ? atoi(argv[1]) : 0;
	struct pollfd p[2] = { { .fd = bound(SOCK_STREAM, port), .events = POLLIN },
			       { .fd = bound(SOCK_DGRAM, port), .events = POLLIN } };
	char line[64], buf[1500];

	if (!port || p[0].fd < 0 || p[1].fd < 0) {
		perror("serve");
		return 1;
	}
	snprintf(line, sizeof(line), "GUEST-TCP %d\n", port);
	for (;;) {
		if (poll(p, 2, -1) < 0)
			continue;
		if (p[0].revents & POLLIN) {
			int c = accept(p[0].fd, NULL, NULL);
			if (c >= 0) {
				(void)!write(c, line, strlen(line));
				close(c);
			}
		}
		if (p[1].revents & POLLIN) {
			struct sockaddr_storage from;
			socklen_t len = sizeof(from);
			int head = snprintf(buf, sizeof(buf), "GUEST-UDP %d ", port);
			ssize_t n = recvfrom(p[1].fd, buf + head, sizeof(buf) - head, 0,
					     (struct sockaddr *)&from, &len);
			if (n >= 0)
				sendto(p[1].fd, buf, head + n, 0, (struct sockaddr *)&from, len);
		}
	}
}
