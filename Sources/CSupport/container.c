#define _GNU_SOURCE
#include "CSupport.h"
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <linux/capability.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <string.h>
#include <unistd.h>

int cocoon_pivot_root(const char *new_root, const char *put_old) {
    return (int)syscall(SYS_pivot_root, new_root, put_old);
}

int cocoon_capset(uint64_t effective, uint64_t permitted, uint64_t inheritable) {
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2];
    data[0].effective = (uint32_t)effective;
    data[1].effective = (uint32_t)(effective >> 32);
    data[0].permitted = (uint32_t)permitted;
    data[1].permitted = (uint32_t)(permitted >> 32);
    data[0].inheritable = (uint32_t)inheritable;
    data[1].inheritable = (uint32_t)(inheritable >> 32);
    return (int)syscall(SYS_capset, &header, data);
}

int cocoon_cap_bound_drop(int cap) { return prctl(PR_CAPBSET_DROP, cap, 0, 0, 0); }
int cocoon_cap_ambient_raise(int cap) { return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0); }

/// The highest capability this kernel knows.
int cocoon_cap_last(void) {
    int last = 40;
    while (last > 0 && prctl(PR_CAPBSET_READ, last, 0, 0, 0) < 0) last--;
    return last;
}

int cocoon_set_keepcaps(int on) { return prctl(PR_SET_KEEPCAPS, on ? 1 : 0, 0, 0, 0); }
int cocoon_set_no_new_privs(void) { return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); }
int cocoon_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }
int cocoon_set_pdeathsig(int sig) { return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0); }
int cocoon_sethostname(const char *name) { return sethostname(name, strlen(name)); }

// A new network namespace starts with its loopback down; runc brings it up, and so do we.
int cocoon_loopback_up(void) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    int rc = ioctl(fd, SIOCGIFFLAGS, &ifr);
    if (rc == 0 && !(ifr.ifr_flags & IFF_UP)) {
        ifr.ifr_flags |= IFF_UP;
        rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
    }
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}
int cocoon_setdomainname(const char *name) { return setdomainname(name, strlen(name)); }
int cocoon_setgroups(const uint32_t *gids, int n) { return setgroups((size_t)n, (const gid_t *)gids); }

// The raw syscalls change only the calling thread; glibc's wrappers signal every thread.
// Both are right here: the init stage is single-threaded when it gets this far.
int cocoon_setresuid(uint32_t uid) { return setresuid(uid, uid, uid); }
int cocoon_setresgid(uint32_t gid) { return setresgid(gid, gid, gid); }

int cocoon_setrlimit(int resource, uint64_t soft, uint64_t hard) {
    struct rlimit r = { .rlim_cur = soft, .rlim_max = hard };
    return setrlimit(resource, &r);
}

int cocoon_mknod(const char *path, unsigned int mode, unsigned int major, unsigned int minor) {
    return mknod(path, mode, makedev(major, minor));
}

int cocoon_set_ctty(int fd) { return ioctl(fd, TIOCSCTTY, 0); }

int cocoon_open_path(const char *path) { return open(path, O_PATH | O_CLOEXEC); }

int cocoon_unshare(int flags) { return unshare(flags); }

#include <sys/personality.h>
int cocoon_personality(unsigned long persona) { return personality(persona) == -1 ? -1 : 0; }

#include <sys/mman.h>
#include <sys/sendfile.h>
int cocoon_sealed_copy(const char *path) {
    int src = open(path, O_RDONLY | O_CLOEXEC);
    if (src < 0) return -1;
    struct stat st;
    if (fstat(src, &st) < 0) { close(src); return -1; }
    int mem = memfd_create("cocoon-init", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (mem < 0) { close(src); return -1; }
    off_t offset = 0;
    while (offset < st.st_size) {
        ssize_t n = sendfile(mem, src, &offset, (size_t)(st.st_size - offset));
        if (n <= 0) { int e = errno; close(src); close(mem); errno = n == 0 ? EIO : e; return -1; }
    }
    close(src);
    if (fcntl(mem, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0) {
        int e = errno; close(mem); errno = e; return -1;
    }
    return mem;
}

#include <stdlib.h>
#include <termios.h>

int cocoon_open_pty(int *master, char *slave_name, size_t len) {
    int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0) return -1;
    if (unlockpt(m) < 0 || ptsname_r(m, slave_name, len) != 0) { int e = errno; close(m); errno = e; return -1; }
    *master = m;
    return 0;
}

int cocoon_send_fd(int sock, int fd, const char *name) {
    struct msghdr msg = {0};
    struct iovec iov = { .iov_base = (void *)name, .iov_len = strlen(name) };
    char control[CMSG_SPACE(sizeof(int))];
    memset(control, 0, sizeof control);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    return sendmsg(sock, &msg, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

/// Receives exactly one descriptor; any other shape of message is refused (EBADMSG).
int cocoon_recv_fd(int sock, char *name, size_t len) {
    struct msghdr msg = {0};
    struct iovec iov = { .iov_base = name, .iov_len = len > 0 ? len - 1 : 0 };
    char control[CMSG_SPACE(sizeof(int) * 4)];
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) return -1;
    if (len > 0) name[n] = 0;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int))
        || (msg.msg_flags & MSG_CTRUNC)) {
        // Close whatever arrived, then refuse.
        for (; c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_type == SCM_RIGHTS) {
                int *fds = (int *)CMSG_DATA(c);
                for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) close(fds[i]);
            }
        }
        errno = EBADMSG;
        return -1;
    }
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof(int));
    return fd;
}

int cocoon_set_winsize(int fd, unsigned rows, unsigned cols) {
    struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
    return ioctl(fd, TIOCSWINSZ, &ws);
}

int cocoon_copy_winsize(int from, int to) {
    struct winsize ws;
    if (ioctl(from, TIOCGWINSZ, &ws) < 0) return -1;
    return ioctl(to, TIOCSWINSZ, &ws);
}

static struct termios saved_termios;
static int saved_termios_fd = -1;

int cocoon_make_raw(int fd) {
    struct termios t;
    if (tcgetattr(fd, &t) < 0) return -1;
    saved_termios = t;
    saved_termios_fd = fd;
    cfmakeraw(&t);
    return tcsetattr(fd, TCSANOW, &t);
}

void cocoon_restore_terminal(void) {
    if (saved_termios_fd >= 0) tcsetattr(saved_termios_fd, TCSANOW, &saved_termios);
}

#include <linux/bpf.h>
// Loads a BPF_PROG_TYPE_CGROUP_DEVICE program; returns its fd, or -1 with the verifier's log in `log`.
int cocoon_bpf_load_device_program(const void *insns, unsigned count, char *log, unsigned log_size) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insns = (uint64_t)(uintptr_t)insns;
    attr.insn_cnt = count;
    attr.license = (uint64_t)(uintptr_t)"Apache-2.0";
    attr.log_buf = (uint64_t)(uintptr_t)log;
    attr.log_size = log_size;
    attr.log_level = log_size > 0 ? 1 : 0;
    return (int)syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
}

// Attaches a device program to a cgroup v2 directory (next to any others: BPF_F_ALLOW_MULTI).
int cocoon_bpf_attach_device_program(int cgroup_fd, int prog_fd) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.target_fd = (uint32_t)cgroup_fd;
    attr.attach_bpf_fd = (uint32_t)prog_fd;
    attr.attach_type = BPF_CGROUP_DEVICE;
    attr.attach_flags = BPF_F_ALLOW_MULTI;
    return (int)syscall(SYS_bpf, BPF_PROG_ATTACH, &attr, sizeof attr);
}

int cocoon_get_winsize(int fd, unsigned *rows, unsigned *cols) {
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) < 0) return -1;
    *rows = ws.ws_row;
    *cols = ws.ws_col;
    return 0;
}
