#define _GNU_SOURCE
#include "CSupport.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/reboot.h>
#include <unistd.h>
#include <linux/vm_sockets.h>
#include <pthread.h>

int cocoon_fcntl_setfl(int fd, int flags) { return fcntl(fd, F_SETFL, flags); }
int cocoon_fcntl_getfl(int fd) { return fcntl(fd, F_GETFL); }
int cocoon_set_pipe_size(int fd, int size) { return fcntl(fd, F_SETPIPE_SZ, size); }
int cocoon_set_cloexec(int fd) { return fcntl(fd, F_SETFD, FD_CLOEXEC); }

int cocoon_reboot(int restart) {
    sync();
    return reboot(restart ? RB_AUTOBOOT : RB_POWER_OFF);
}

int cocoon_vsock_connect(unsigned int cid, unsigned int port) {
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_vm addr;
    memset(&addr, 0, sizeof addr);
    addr.svm_family = AF_VSOCK;
    addr.svm_cid = cid;
    addr.svm_port = port;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int cocoon_vsock_listen(unsigned int port, int backlog) {
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_vm addr;
    memset(&addr, 0, sizeof addr);
    addr.svm_family = AF_VSOCK;
    addr.svm_cid = VMADDR_CID_ANY;
    addr.svm_port = port;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, backlog) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

unsigned int cocoon_vmaddr_cid_any(void) { return VMADDR_CID_ANY; }

// accept4 needs _GNU_SOURCE, which Swift's Glibc module does not define.
int cocoon_accept_cloexec(int fd) { return accept4(fd, NULL, NULL, SOCK_CLOEXEC); }

#include <sys/vfs.h>
// The file system magic of a path (statfs is not exported by Swift's Glibc module); -1 on error.
long cocoon_fs_type(const char *path) {
    struct statfs fs;
    if (statfs(path, &fs) != 0) return -1;
    return (long)fs.f_type;
}

#include <signal.h>
#include <sys/signalfd.h>
// Blocks the given signals in the calling thread and returns a signalfd that receives them.
int cocoon_signalfd(const int *signals, int n) {
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < n; i++) sigaddset(&set, signals[i]);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) return -1;
    return signalfd(-1, &set, SFD_CLOEXEC);
}

// The signal number of the next pending signalfd record, or -1.
int cocoon_signalfd_read(int fd) {
    struct signalfd_siginfo info;
    ssize_t n = read(fd, &info, sizeof info);
    return n == (ssize_t)sizeof info ? (int)info.ssi_signo : -1;
}
