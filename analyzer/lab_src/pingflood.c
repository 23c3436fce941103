/* ICMP echo flood on loopback through unprivileged ping sockets whose replies are never read:
 * the kernel builds every echo reply with GFP_ATOMIC skb allocations and queues it on a socket
 * nobody drains. Usage: pingflood NSOCK SECONDS PAYLOAD RCVBUF. Touches /tmp/flood-done when
 * the flood ends, then holds the sockets until SIGUSR1, closes them and touches /tmp/released. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t release;
static void on_usr1(int s) { (void)s; release = 1; }

int main(int argc, char **argv) {
    int nsock = argc > 1 ? atoi(argv[1]) : 16, secs = argc > 2 ? atoi(argv[2]) : 40;
    int payload = argc > 3 ? atoi(argv[3]) : 1400, rcvbuf = argc > 4 ? atoi(argv[4]) : 16 << 20;
    int fds[256];
    signal(SIGUSR1, on_usr1);
    if (nsock > 256) nsock = 256;
    for (int i = 0; i < nsock; i++) {
        fds[i] = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
        if (fds[i] < 0) { perror("ping socket"); return 1; }
        setsockopt(fds[i], SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
        int nb = 1;
        (void)nb;
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
    }
    struct sockaddr_in dst = {.sin_family = AF_INET};
    dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char buf[65536];
    struct icmphdr *h = (struct icmphdr *)buf;
    memset(buf, 0xab, sizeof buf);
    time_t end = time(NULL) + secs;
    unsigned long sent = 0, errs = 0;
    unsigned short seq = 0;
    while (time(NULL) < end) {
        for (int i = 0; i < nsock; i++) {
            memset(h, 0, sizeof *h);
            h->type = ICMP_ECHO;
            h->un.echo.sequence = htons(seq++);
            if (sendto(fds[i], buf, sizeof *h + payload, 0, (struct sockaddr *)&dst, sizeof dst) < 0) errs++;
            else sent++;
        }
    }
    fprintf(stderr, "pingflood: sent %lu, send errors %lu\n", sent, errs);
    close(open("/tmp/flood-done", O_CREAT | O_WRONLY, 0644));
    while (!release) pause();
    for (int i = 0; i < nsock; i++) close(fds[i]);
    close(open("/tmp/released", O_CREAT | O_WRONLY, 0644));
    for (;;) pause();
}
