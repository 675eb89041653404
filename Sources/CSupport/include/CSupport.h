#ifndef COCOON_CSUPPORT_H
#define COCOON_CSUPPORT_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>

/// How a child is started by cocoon_spawn.
typedef struct {
    const char *path;          ///< executable (absolute path)
    char *const *argv;         ///< NULL-terminated
    char *const *envp;         ///< NULL-terminated
    const int *fds;            ///< fds[i] becomes the child's fd i; -1 leaves fd i closed
    int nfds;
    int new_session;           ///< setsid() so terminal signals go to us, not the child
    int parent_death_signal;   ///< 0 for none; delivered when this process dies
} cocoon_spawn_attr;

/// Starts a child from a dedicated, never-exiting thread (so that PR_SET_PDEATHSIG,
/// which tracks the creating *thread*, only fires when the whole process dies).
/// Uses a vfork-style clone: safe in a multithreaded process, unlike fork().
/// Returns 0 and fills pid and pidfd, or an errno value (exec failures included).
int cocoon_spawn(const cocoon_spawn_attr *attr, pid_t *pid, int *pidfd);

int cocoon_pidfd_open(pid_t pid);
int cocoon_pidfd_send_signal(int pidfd, int sig);

/// 1 when this process is PID 1 and cocoon's early constructor mounted /proc.
int cocoon_early_proc_mounted(void);

/// Variadic or macro-only calls Swift cannot make directly.
int cocoon_fcntl_setfl(int fd, int flags);
int cocoon_fcntl_getfl(int fd);
int cocoon_set_cloexec(int fd);
int cocoon_reboot(int restart);
int cocoon_accept_cloexec(int fd);
long cocoon_fs_type(const char *path);

/// AF_VSOCK helpers (struct sockaddr_vm is awkward from Swift).
int cocoon_vsock_connect(unsigned int cid, unsigned int port);
int cocoon_vsock_listen(unsigned int port, int backlog);
unsigned int cocoon_vmaddr_cid_any(void);

#endif
