/*
 * The benchmark baseline and the fault-test guest: the smallest possible static init.
 * It prints one line and powers off, so `make bench-boot` can compare the agent's boot
 * with the bare cost of the same kernel reaching userspace.
 *   baseline.mode=hang   never answers (tests the host's boot deadline)
 *   baseline.mode=exit   returns from init, which panics the kernel (tests panic reporting)
 *   baseline.mode=stream writes baseline.mib=N MiB of zeros straight to the agent's virtio-serial
 *                        port, then powers off: the raw channel throughput `make bench-sandbox`
 *                        compares the mux with
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
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
    sync();
    reboot(RB_AUTOBOOT);
    return 0;
}
