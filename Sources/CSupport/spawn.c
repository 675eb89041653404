#define _GNU_SOURCE
#include "CSupport.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif

// clone3's argument (linux/sched.h, version 2 with the cgroup field).
struct cocoon_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

#if defined(__x86_64__)
// clone3 with a stack of the caller's: the child starts on that stack right after the syscall, so
// it cannot return through C (glibc's clone does the same in assembly). The child calls fn(arg) and
// exits with its result; the parent gets the pid or -errno.
// long cocoon_clone3_run(struct cocoon_clone_args *args, size_t size, int (*fn)(void *), void *arg)
__asm__(
    ".text\n"
    ".globl cocoon_clone3_run\n"
    ".hidden cocoon_clone3_run\n"
    ".type cocoon_clone3_run, @function\n"
    "cocoon_clone3_run:\n"
    "    mov %rdx, %r8\n"        // fn and arg survive the syscall in r8/r9 (only rax, rcx, r11 change)
    "    mov %rcx, %r9\n"
    "    mov $435, %eax\n"       // SYS_clone3
    "    syscall\n"
    "    test %rax, %rax\n"
    "    jz 1f\n"
    "    ret\n"                  // parent: pid, or -errno
    "1:  xor %ebp, %ebp\n"       // child: on the new stack (16-byte aligned), no frame to return to
    "    mov %r9, %rdi\n"
    "    call *%r8\n"
    "    mov %eax, %edi\n"
    "    mov $60, %eax\n"        // SYS_exit
    "    syscall\n"
    "    hlt\n"
    ".size cocoon_clone3_run, .-cocoon_clone3_run\n");
long cocoon_clone3_run(struct cocoon_clone_args *args, size_t size, int (*fn)(void *), void *arg);
#endif

struct child_args {
    const cocoon_spawn_attr *attr;
    int *dup_fds;        // scratch, allocated by the parent
    volatile int error;  // written by the child (shared memory) when exec fails
};

// Runs in the child on its own stack, sharing the parent's memory until exec:
// only async-signal-safe calls, no allocation, no locks.
static int child_main(void *p) {
    struct child_args *a = p;
    const cocoon_spawn_attr *attr = a->attr;
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < _NSIG; s++) sigaction(s, &dfl, NULL);

    // Into the cgroup before anything else (see cgroup_task_fds): "0" is this thread, resolved by the kernel.
    for (int i = 0; i < attr->ncgroup_task_fds; i++) {
        if (write(attr->cgroup_task_fds[i], "0", 1) != 1) goto fail;
    }
    // Join existing namespaces (the caller orders them: user first). setns works here because
    // this child is a single thread of its own, unlike the multithreaded parent.
    for (int i = 0; i < attr->nsetns; i++) {
        if (setns(attr->setns_fds[i], 0) < 0) goto fail;
    }
    if (attr->readonly_exec) {
        // In the child's new mount namespace: nothing may propagate back to the host, then the
        // binary is re-mounted read-only over itself, so /proc/PID/exe can never be written through.
        if (mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) < 0) goto fail;
        if (mount(attr->path, attr->path, NULL, MS_BIND, NULL) < 0) goto fail;
        if (mount(NULL, attr->path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0) goto fail;
    }
    if (attr->new_session && setsid() < 0) goto fail;
    if (attr->parent_death_signal) {
        if (prctl(PR_SET_PDEATHSIG, attr->parent_death_signal) < 0) goto fail;
    }
    // Move every source out of the way first so that fds[i] == j for j < i cannot clobber.
    int base = attr->nfds + 3 > 64 ? attr->nfds + 3 : 64;
    for (int i = 0; i < attr->nfds; i++) {
        a->dup_fds[i] = -1;
        if (attr->fds[i] < 0) continue;
        a->dup_fds[i] = fcntl(attr->fds[i], F_DUPFD_CLOEXEC, base);
        if (a->dup_fds[i] < 0) goto fail;
    }
    int exec_fd = -1;
    if (attr->exec_fd >= 0) {
        exec_fd = fcntl(attr->exec_fd, F_DUPFD_CLOEXEC, base);
        if (exec_fd < 0) goto fail;
    }
    int wait_fd_moved = -1;
    if (attr->wait_fd >= 0) {
        wait_fd_moved = fcntl(attr->wait_fd, F_DUPFD_CLOEXEC, base);
        if (wait_fd_moved < 0) goto fail;
    }
    for (int i = 0; i < attr->nfds; i++) {
        if (a->dup_fds[i] < 0) { close(i); continue; }
        if (dup2(a->dup_fds[i], i) < 0) goto fail;  // dup2 clears FD_CLOEXEC on i
    }
    // The executable's descriptor survives (close-on-exec) just past the child's own.
    int keep = attr->nfds;
    if (exec_fd >= 0) {
        if (dup3(exec_fd, keep, O_CLOEXEC) < 0) goto fail;
        exec_fd = keep++;
    }
    if (wait_fd_moved >= 0) {
        if (dup3(wait_fd_moved, keep, O_CLOEXEC) < 0) goto fail;
        wait_fd_moved = keep++;
    }
    if (syscall(SYS_close_range, (unsigned)keep, ~0U, 0) < 0) {
        for (int fd = keep; fd < 1024; fd++) close(fd);
    }
    if (attr->wait_fd >= 0) {
        // wait_fd was moved past the mapped descriptors like exec_fd; a closed pipe means "give up".
        char go;
        if (read(wait_fd_moved, &go, 1) != 1) { errno = ECANCELED; goto fail; }
        close(wait_fd_moved);
    }
    if (attr->become_root) {
        if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) goto fail;
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (exec_fd >= 0)
        syscall(SYS_execveat, exec_fd, "", attr->argv, attr->envp, AT_EMPTY_PATH);
    else
        execve(attr->path, attr->argv, attr->envp);
fail:
    a->error = errno ? errno : EINVAL;
    _exit(127);
}

static int spawn_now(const cocoon_spawn_attr *attr, pid_t *pid_out, int *pidfd_out) {
    const size_t stack_size = 256 * 1024;
    void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) return errno;
    int *dup_fds = calloc(attr->nfds > 0 ? attr->nfds : 1, sizeof(int));
    if (!dup_fds) { munmap(stack, stack_size); return ENOMEM; }
    struct child_args args = { .attr = attr, .dup_fds = dup_fds, .error = 0 };

    // Block every signal so no handler of ours runs in the child before it resets them.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    // Joining a pid namespace only affects children, so it is done on this (spawner) thread's
    // pid_for_children and undone right after the clone.
    int restore_pidns = -1;
    if (attr->pidns_fd >= 0) {
        restore_pidns = open("/proc/thread-self/ns/pid_for_children", O_RDONLY | O_CLOEXEC);
        if (restore_pidns < 0 || setns(attr->pidns_fd, CLONE_NEWPID) < 0) {
            int e = errno;
            if (restore_pidns >= 0) close(restore_pidns);
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            munmap(stack, stack_size);
            free(dup_fds);
            return e;
        }
    }
    int pidfd = -1;
    // A waiting child gets its own copy of memory (fork semantics) so that we can return at once;
    // it runs only async-signal-safe calls before execve. Otherwise vfork semantics, sharing memory.
    int sharing = attr->wait_fd >= 0 ? 0 : (CLONE_VM | CLONE_VFORK);
    pid_t pid;
    int clone_errno;
    if (attr->cgroup_fd >= 0) {
#if defined(__x86_64__)
        struct cocoon_clone_args ca;
        memset(&ca, 0, sizeof ca);
        ca.flags = (uint64_t)(unsigned)sharing | CLONE_PIDFD | CLONE_INTO_CGROUP | attr->clone_flags;
        ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
        ca.exit_signal = SIGCHLD;
        ca.cgroup = (uint64_t)attr->cgroup_fd;
        long r;
        if (sharing) {
            ca.stack = (uint64_t)(uintptr_t)stack;
            ca.stack_size = stack_size;
            r = cocoon_clone3_run(&ca, sizeof ca, child_main, &args);
        } else {
            // Fork semantics (a copy of our memory): the child may return through C like fork's.
            r = syscall(SYS_clone3, &ca, sizeof ca);
            if (r == 0) _exit(child_main(&args));
            if (r < 0) r = -errno;
        }
        pid = r < 0 ? -1 : (pid_t)r;
        clone_errno = r < 0 ? (int)-r : 0;
#else
        pid = -1;
        clone_errno = ENOSYS;
#endif
    } else {
        pid = clone(child_main, (char *)stack + stack_size,
                    sharing | CLONE_PIDFD | SIGCHLD | (int)attr->clone_flags, &args, &pidfd);
        clone_errno = errno;
    }
    if (restore_pidns >= 0) {
        setns(restore_pidns, CLONE_NEWPID);
        close(restore_pidns);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    munmap(stack, stack_size);
    free(dup_fds);
    if (pid < 0) return clone_errno;
    // A forked child reports exec failures through its exit status only (it does not share memory).
    if (args.error) {
        waitpid(pid, NULL, 0);
        close(pidfd);
        return args.error;
    }
    fcntl(pidfd, F_SETFD, FD_CLOEXEC);
    *pid_out = pid;
    *pidfd_out = pidfd;
    return 0;
}

// The spawner thread: requests are handed over one at a time under a mutex.
static pthread_mutex_t spawn_lock = PTHREAD_MUTEX_INITIALIZER;   // serialises callers
static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t state_cond = PTHREAD_COND_INITIALIZER;
static pthread_once_t spawner_once = PTHREAD_ONCE_INIT;
static int spawner_started = 0;
static const cocoon_spawn_attr *pending;
static int result_ready;
static int result_error;
static pid_t result_pid;
static int result_pidfd;

static void *spawner_main(void *unused) {
    (void)unused;
    pthread_mutex_lock(&state_lock);
    for (;;) {
        while (pending == NULL) pthread_cond_wait(&state_cond, &state_lock);
        const cocoon_spawn_attr *attr = pending;
        pending = NULL;
        pthread_mutex_unlock(&state_lock);
        pid_t pid = -1;
        int pidfd = -1;
        int err = spawn_now(attr, &pid, &pidfd);
        pthread_mutex_lock(&state_lock);
        result_error = err;
        result_pid = pid;
        result_pidfd = pidfd;
        result_ready = 1;
        pthread_cond_broadcast(&state_cond);
    }
    return NULL;
}

static void start_spawner(void) {
    pthread_t t;
    pthread_attr_t ta;
    pthread_attr_init(&ta);
    pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
    spawner_started = pthread_create(&t, &ta, spawner_main, NULL) == 0;
    pthread_attr_destroy(&ta);
}

int cocoon_spawn(const cocoon_spawn_attr *attr, pid_t *pid, int *pidfd) {
    if (!attr || !attr->path || !attr->argv || !attr->envp || attr->nfds < 0 || attr->nsetns < 0) return EINVAL;
    pthread_once(&spawner_once, start_spawner);
    if (!spawner_started) return EAGAIN;
    pthread_mutex_lock(&spawn_lock);
    pthread_mutex_lock(&state_lock);
    result_ready = 0;
    pending = attr;
    pthread_cond_broadcast(&state_cond);
    while (!result_ready) pthread_cond_wait(&state_cond, &state_lock);
    int err = result_error;
    *pid = result_pid;
    *pidfd = result_pidfd;
    pthread_mutex_unlock(&state_lock);
    pthread_mutex_unlock(&spawn_lock);
    return err;
}

int cocoon_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int cocoon_pidfd_send_signal(int pidfd, int sig) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}
