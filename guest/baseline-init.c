/*
 * The benchmark baseline and the fault-test guest: the smallest possible static init.
 * It prints one line and powers off, so `make bench-boot` can compare the agent's boot
 * with the bare cost of the same kernel reaching userspace.
 *   baseline.mode=hang   never answers (tests the host's boot deadline)
 *   baseline.mode=exit   returns from init, which panics the kernel (tests panic reporting)
 */
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <unistd.h>

static void say(const char *s) { (void)!write(1, s, strlen(s)); }

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
    sync();
    reboot(RB_AUTOBOOT);
    return 0;
}
