#ifndef COCOON_CSUPPORT_H
#define COCOON_CSUPPORT_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
// libseccomp, for OCI seccomp profiles (linked statically into cocoon-init and the agent).
#include <seccomp.h>

/// How a child is started by cocoon_spawn.
typedef struct {
    const char *path;          ///< executable (absolute path)
    char *const *argv;         ///< NULL-terminated
    char *const *envp;         ///< NULL-terminated
    const int *fds;            ///< fds[i] becomes the child's fd i; -1 leaves fd i closed
    int nfds;
    int new_session;           ///< setsid() so terminal signals go to us, not the child
    int parent_death_signal;   ///< 0 for none; delivered when this process dies
    unsigned long clone_flags; ///< extra CLONE_NEW* flags: the child starts in new namespaces
    const int *setns_fds;      ///< namespaces the child joins before exec, in this order (user first)
    int nsetns;
    int pidns_fd;              ///< a pid namespace to start the child in, or -1
    int exec_fd;               ///< when >= 0, execveat(exec_fd, "", AT_EMPTY_PATH) instead of path
    int readonly_exec;         ///< with CLONE_NEWNS: exec `path` through a read-only bind mount of itself
    /// When >= 0, the child reads one byte from it before execve (after the caller wrote the id maps of
    /// a new user namespace: exec'ing unmapped would drop every capability). The child is then not a
    /// vfork child, since the caller must run on meanwhile.
    int wait_fd;
    /// Before execve, become uid/gid 0 of the (new or joined) user namespace, so that the exec
    /// keeps the namespace's capabilities.
    int become_root;
    /// When >= 0, a cgroup v2 directory the child is born in (clone3's CLONE_INTO_CGROUP): no
    /// migration afterwards, which on cgroup v1 and v2 alike waits for an RCU grace period. Fails
    /// with ENOSYS where clone3 or CLONE_INTO_CGROUP is missing (kernels before 5.7, not x86-64).
    int cgroup_fd;
    /// cgroup v1: `tasks` files of the cgroup the child belongs in, opened for writing by the caller. The
    /// child writes "0" to each first thing, moving itself (a single thread) in: unlike a move by pid
    /// through cgroup.procs, that takes no global lock and waits for no RCU grace period. The kernel
    /// checks the opener's credentials, so this works from inside a user namespace too.
    const int *cgroup_task_fds;
    int ncgroup_task_fds;
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
/// F_SETPIPE_SZ, which the Glibc module hides behind _GNU_SOURCE.
int cocoon_set_pipe_size(int fd, int size);
int cocoon_set_cloexec(int fd);
int cocoon_reboot(int restart);
int cocoon_accept_cloexec(int fd);
long cocoon_fs_type(const char *path);
int cocoon_signalfd(const int *signals, int n);
int cocoon_signalfd_read(int fd);

/// Container set-up calls without a usable glibc wrapper from Swift.
int cocoon_pivot_root(const char *new_root, const char *put_old);
int cocoon_capset(uint64_t effective, uint64_t permitted, uint64_t inheritable);
int cocoon_cap_bound_drop(int cap);
int cocoon_cap_ambient_raise(int cap);
int cocoon_cap_last(void);
int cocoon_set_keepcaps(int on);
int cocoon_set_no_new_privs(void);
int cocoon_set_child_subreaper(void);
int cocoon_set_pdeathsig(int sig);
int cocoon_sethostname(const char *name);
/// Sets the loopback interface of the current network namespace up.
int cocoon_loopback_up(void);
int cocoon_setdomainname(const char *name);
/// Opens a new tap device (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR) named `name` in the calling thread's
/// network namespace; writes the name the kernel gave it. Returns the descriptor, or -1 with errno.
int cocoon_tap_open(const char *name, char *actual_name, size_t len);
/// setns(fd, CLONE_NEWNET) for the calling thread only.
int cocoon_setns_net(int fd);
/// setns(fd, CLONE_NEWTIME): the kernel allows it only to a process that shares its memory with nobody.
int cocoon_setns_time(int fd);
int cocoon_setgroups(const uint32_t *gids, int n);
int cocoon_setresuid(uint32_t uid);
int cocoon_setresgid(uint32_t gid);
int cocoon_setrlimit(int resource, uint64_t soft, uint64_t hard);
int cocoon_mknod(const char *path, unsigned int mode, unsigned int major, unsigned int minor);
int cocoon_set_ctty(int fd);
int cocoon_open_path(const char *path);
int cocoon_unshare(int flags);
/// personality(2) for the execution domain (PER_LINUX, PER_LINUX32); 0, or -1 with errno.
int cocoon_personality(unsigned long persona);

/// A sealed, executable in-memory copy of a file (runc's answer to CVE-2019-5736): what the
/// container could reach through /proc/PID/exe is this copy, never the host's binary. -1 on error.
int cocoon_sealed_copy(const char *path);

/// Terminals: a pty pair in the current /dev, fd passing by SCM_RIGHTS (runc console-socket protocol),
/// window sizes, raw mode for the relaying side.
int cocoon_open_pty(int *master, char *slave_name, size_t len);
int cocoon_send_fd(int sock, int fd, const char *name);
int cocoon_recv_fd(int sock, char *name, size_t len);
int cocoon_set_winsize(int fd, unsigned rows, unsigned cols);
int cocoon_copy_winsize(int from, int to);
int cocoon_get_winsize(int fd, unsigned *rows, unsigned *cols);
int cocoon_make_raw(int fd);
void cocoon_restore_terminal(void);

/// cgroup v2 device filtering: load a BPF_PROG_TYPE_CGROUP_DEVICE program, attach it to a cgroup.
int cocoon_bpf_load_device_program(const void *insns, unsigned count, char *log, unsigned log_size);
int cocoon_bpf_attach_device_program(int cgroup_fd, int prog_fd);

/// AF_VSOCK helpers (struct sockaddr_vm is awkward from Swift).
int cocoon_vsock_connect(unsigned int cid, unsigned int port);
int cocoon_vsock_listen(unsigned int port, int backlog);
unsigned int cocoon_vmaddr_cid_any(void);

#endif
