/* A UDP echo server for lab containers (their root holds only a static busybox, which has no
 * UDP server): binds IP:PORT, sends every datagram back to its sender. Built static by
 * tests/doubles/lab/containers.py (udp_echo_binary) so it runs inside the chroot. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in me = {0};
    me.sin_family = AF_INET;
    me.sin_port = htons((unsigned short)atoi(argv[2]));
    if (fd < 0 || inet_pton(AF_INET, argv[1], &me.sin_addr) != 1) return 1;
    if (bind(fd, (struct sockaddr *)&me, sizeof me) != 0) return 1;
    char buf[2048];
    for (;;) {
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len);
        if (n >= 0) sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, len);
    }
}
