#define _GNU_SOURCE
#include "CSupport.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <net/if.h>
#include <linux/if_tun.h>

// TUNSETIFF is an ioctl, which Swift cannot call (variadic). The tap lives in the network namespace
// of the thread that opens /dev/net/tun; it is not persistent, so it goes away with its last descriptor.
int cocoon_tap_open(const char *name, char *actual_name, size_t len) {
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    // IFF_VNET_HDR: QEMU's virtio-net passes checksum and segmentation offloads through the header.
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (name) strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (actual_name && len > 0) {
        strncpy(actual_name, ifr.ifr_name, len - 1);
        actual_name[len - 1] = 0;
    }
    return fd;
}

int cocoon_setns_net(int fd) { return setns(fd, CLONE_NEWNET); }
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
int cocoon_setns_time(int fd) { return setns(fd, CLONE_NEWTIME); }
