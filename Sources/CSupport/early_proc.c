// The Swift runtime reads /proc (its own path, the entropy source) in its
// initialisers. As PID 1 in the guest nothing is mounted yet, so mount /proc
// before any Swift code runs, and block SIGCHLD so that every thread inherits
// the mask and the agent's reaper can take SIGCHLD synchronously with sigwait.
#define _GNU_SOURCE
#include "CSupport.h"
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

static int early_proc_mounted = 0;

__attribute__((constructor(101))) static void cocoon_early_init(void) {
    // A peer that closes a pipe or socket early (a hook that ignores its stdin, a client that goes
    // away) must be an EPIPE error, not the end of the runtime. Children get SIG_DFL back at spawn.
    signal(SIGPIPE, SIG_IGN);
    // PID 1 of a container's pid namespace during the init stage is not the guest's init.
    if (getpid() != 1 || getenv("_COCOON_INIT_SYNC_FD") != NULL) return;
    mkdir("/proc", 0555);
    if (access("/proc/self/exe", F_OK) != 0) {
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0)
            early_proc_mounted = 1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
}

int cocoon_early_proc_mounted(void) { return early_proc_mounted; }
