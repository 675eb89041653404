/*
 * The benchmark baseline and the fault-test guest: the smallest possible static init.
 * It prints one line and powers off, so `make bench-boot` can compare the agent's boot
 * with the bare cost of the same kernel reaching userspace.
 *   baseline.mode=hang   never answers (tests the host's boot deadline)
 *   baseline.mode=exit   returns from init, which panics the kernel (tests panic reporting)
 *   baseline.mode=stream writes baseline.mib=N MiB of zeros straight to the agent's virtio-serial
 *                        port, then powers off: the raw channel throughput `make bench-sandbox`
 *                        compares the mux with
 *   baseline.mode=relay  the same bytes, but the way the agent carries a container's stdout: a child
 *                        writes them into a pipe, and this init relays them to the port in frames of a
 *                        10-byte header and up to 64 KiB (read, then writev): what the agent's own
 *                        code costs on top of that path, `make bench-sandbox` shows against it
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <sys/reboot.h>
#include <unistd.h>

static void say(const char *s) { (void)!write(1, s, strlen(s)); }

/* The port whose sysfs name is cocoon.agent, opened for writing; -1 if there is none. */
static int open_agent_port(void) {
    mount("sysfs", "/sys", "sysfs", 0, NULL);
    mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
    DIR *d = opendir("/sys/class/virtio-ports");
    if (!d) return -1;
    struct dirent *e;
    int fd = -1;
    while (fd < 0 && (e = readdir(d))) {
        char path[512], name[64] = {0};
        snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
        int n = open(path, O_RDONLY);
        if (n < 0) continue;
        (void)!read(n, name, sizeof name - 1);
        close(n);
        if (strncmp(name, "cocoon.agent", 12) == 0) {
            snprintf(path, sizeof path, "/dev/%s", e->d_name);
            fd = open(path, O_WRONLY);
        }
    }
    closedir(d);
    return fd;
}

static void stream(const char *cmdline) {
    const char *mib = strstr(cmdline, "baseline.mib=");
    long total = (mib ? atol(mib + 13) : 64) << 20;
    int port = open_agent_port();
    if (port < 0) {
        say("cocoon-baseline: no agent port to stream to\n");
        return;
    }
    static char zeros[64 << 10];
    for (long sent = 0; sent < total;) {
        long chunk = total - sent < (long)sizeof zeros ? total - sent : (long)sizeof zeros;
        ssize_t n = write(port, zeros, (size_t)chunk);
        if (n <= 0) break;
        sent += n;
    }
    close(port);
    say("cocoon-baseline: stream done\n");
}

/* Writes all of buf[0..<len] (a virtio-serial port takes at most 32 KiB per write). */
static int write_all(int fd, const char *buf, long len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, (size_t)len);
        if (n <= 0) return -1;
        buf += n;
        len -= n;
    }
    return 0;
}

static void relay(const char *cmdline) {
    const char *mib = strstr(cmdline, "baseline.mib=");
    long total = (mib ? atol(mib + 13) : 64) << 20;
    enum { header = 10, chunk = 64 << 10 };
    /* Exactly `total` bytes reach the host, headers included. */
    long frames = (total + header + chunk - 1) / (header + chunk);
    long payload = total - header * frames;
    int port = open_agent_port();
    int p[2];
    if (port < 0 || pipe(p) != 0) {
        say("cocoon-baseline: no agent port or pipe to relay through\n");
        return;
    }
    fcntl(p[1], F_SETPIPE_SZ, 1 << 20);  /* as the agent sizes a container's stdout pipe */
    pid_t child = fork();
    if (child == 0) {
        static char zeros[chunk];
        close(p[0]);
        for (long sent = 0; sent < payload;) {
            long n = payload - sent < chunk ? payload - sent : chunk;
            if (write_all(p[1], zeros, n) != 0) _exit(1);
            sent += n;
        }
        _exit(0);
    }
    close(p[1]);
    static char buf[chunk];
    char head[header] = {0};
    for (long done = 0; done < payload;) {
        long want = payload - done < chunk ? payload - done : chunk, have = 0;
        while (have < want) {
            ssize_t n = read(p[0], buf + have, (size_t)(want - have));
            if (n <= 0) goto out;
            have += n;
        }
        struct iovec v[2] = {{head, header}, {buf, (size_t)want}};
        ssize_t n = writev(port, v, 2);
        if (n < 0) goto out;
        if (n < header) {
            if (write_all(port, head + n, header - n) != 0) goto out;
            n = header;
        }
        if (write_all(port, buf + (n - header), want - (n - header)) != 0) goto out;
        done += want;
    }
out:
    close(p[0]);
    waitpid(child, NULL, 0);
    close(port);
    say("cocoon-baseline: relay done\n");
}

int main(void) {
    say("cocoon-baseline: init started\n");
    char cmdline[4096] = {0};
    mount("proc", "/proc", "proc", 0, NULL);
    int fd = open("/proc/cmdline", O_RDONLY);
    if (fd >= 0) {
        (void)!read(fd, cmdline, sizeof cmdline - 1);
        close(fd);
    }
    if (strstr(cmdline, "baseline.mode=hang")) {
        say("cocoon-baseline: hanging as asked\n");
        for (;;) pause();
    }
    if (strstr(cmdline, "baseline.mode=exit")) {
        say("cocoon-baseline: exiting as asked\n");
        return 3;
    }
    if (strstr(cmdline, "baseline.mode=stream")) stream(cmdline);
    if (strstr(cmdline, "baseline.mode=relay")) relay(cmdline);
    sync();
    reboot(RB_AUTOBOOT);
    return 0;
}
