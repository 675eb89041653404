import CSupport
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// How a child ended.
public enum Termination: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signalled(Int32)

    /// From a status waitpid(2) filled in.
    public init(waitStatus status: Int32) {
        self = (status & 0x7f) == 0 ? .exited((status >> 8) & 0xff) : .signalled(status & 0x7f)
    }

    /// The shell convention: the exit code, or 128 + signal.
    public var exitStatus: Int32 {
        switch self {
        case .exited(let c): c
        case .signalled(let s): 128 + s
        }
    }

    public var description: String {
        switch self {
        case .exited(let c): "exited with status \(c)"
        case .signalled(let s): "killed by signal \(s)"
        }
    }
}

/// A host child process (QEMU, virtiofsd), tracked through a pidfd so that signals never
/// reach a recycled PID and waits can carry a deadline.
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    public let executable: String
    private let pidfd: FileDescriptor
    private let lock = NSLockLite()
    private var termination: Termination?  // guarded by lock

    public struct Options: Sendable {
        /// Child fds 0, 1, 2, ...: each a descriptor of ours, or nil for closed.
        public var fds: [Int32?] = []
        public var environment: [String: String] = [:]
        public var newSession = true
        /// Kill the child if this process dies, so no QEMU outlives its controller.
        public var killWithParent = true
        /// CLONE_NEW* flags: the child starts in these new namespaces.
        public var cloneFlags: UInt = 0
        /// Namespace descriptors the child joins before exec, in order (a user namespace first).
        public var joinNamespaces: [Int32] = []
        /// A pid namespace descriptor to start the child in.
        public var pidNamespace: Int32?
        /// argv[0], when it should differ from the executable's path (OCI hooks set it).
        public var argv0: String?
        /// Execute this descriptor (execveat) rather than the path: a sealed copy, or a binary
        /// that is not reachable by path after setns into a container's mount namespace.
        public var executableDescriptor: Int32?
        /// With a new mount namespace: exec the path through a read-only bind mount of itself.
        public var readOnlyExecutable = false
        /// The child waits for one byte on this descriptor before execve (see cocoon_spawn_attr.wait_fd).
        public var waitDescriptor: Int32?
        /// Become root of the child's user namespace before execve.
        public var becomeRoot = false
        /// A cgroup v2 directory (an open descriptor of it) the child is born in (CLONE_INTO_CGROUP). The spawn
        /// fails with ENOSYS where the kernel or the architecture cannot; callers then spawn without it.
        public var cgroupDescriptor: Int32?
        /// cgroup v1: the cgroup's `tasks` files (descriptors opened for writing by this process); the child
        /// moves itself in before anything else, without the grace-period wait of a move by pid.
        public var cgroupTaskDescriptors: [Int32] = []
        public init() {}
    }

    public static func spawn(_ executable: String, _ arguments: [String], options: Options = Options()) throws(SystemError) -> ChildProcess {
        guard executable.hasPrefix("/") else {
            throw SystemError("spawn \(executable)", errno: EINVAL, detail: "an absolute path is required")
        }
        let argv = ([options.argv0 ?? executable] + arguments).map { strdup($0) }
        let envp = options.environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") }
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        let fds = options.fds.map { $0 ?? -1 }
        var pid: pid_t = 0
        var pidfd: Int32 = -1
        let err: Int32 = ChildRegistry.shared.spawning { () -> (Int32, pid_t?) in
          let err: Int32 = executable.withCString { path in
            (argv + [nil]).withUnsafeBufferPointer { argvBuf in
                (envp + [nil]).withUnsafeBufferPointer { envBuf in
                    fds.withUnsafeBufferPointer { fdBuf in
                      options.joinNamespaces.withUnsafeBufferPointer { nsBuf in
                       options.cgroupTaskDescriptors.withUnsafeBufferPointer { taskBuf in
                        var attr = cocoon_spawn_attr(
                            path: path, argv: argvBuf.baseAddress, envp: envBuf.baseAddress,
                            fds: fdBuf.baseAddress, nfds: Int32(fds.count),
                            new_session: options.newSession ? 1 : 0,
                            parent_death_signal: options.killWithParent ? SIGKILL : 0,
                            clone_flags: options.cloneFlags, setns_fds: nsBuf.baseAddress, nsetns: Int32(options.joinNamespaces.count),
                            pidns_fd: options.pidNamespace ?? -1,
                            exec_fd: options.executableDescriptor ?? -1,
                            readonly_exec: options.readOnlyExecutable ? 1 : 0,
                            wait_fd: options.waitDescriptor ?? -1,
                            become_root: options.becomeRoot ? 1 : 0,
                            cgroup_fd: options.cgroupDescriptor ?? -1,
                            cgroup_task_fds: taskBuf.baseAddress, ncgroup_task_fds: Int32(options.cgroupTaskDescriptors.count))
                        return cocoon_spawn(&attr, &pid, &pidfd)
                       }
                      }
                    }
                }
            }
          }
          return (err, err == 0 ? pid : nil)
        }
        if err != 0 { throw SystemError("spawn \(executable)", errno: err) }
        return ChildProcess(pid: pid, pidfd: FileDescriptor(adopting: pidfd), executable: executable)
    }

    private init(pid: pid_t, pidfd: FileDescriptor, executable: String) {
        self.pid = pid
        self.pidfd = pidfd
        self.executable = executable
    }

    // Not waited for: a PID 1 may reap it as an orphan once it exits.
    deinit { if termination == nil { ChildRegistry.shared.release(pid) } }

    /// The descriptor that becomes readable when the child exits, for poll() alongside sockets.
    public var exitDescriptor: Int32 { pidfd.rawValue }

    public func signal(_ sig: Int32) {
        lock.withLock {
            if termination == nil { _ = cocoon_pidfd_send_signal(pidfd.rawValue, sig) }
        }
    }

    /// The termination if the child has exited (reaping it), without waiting.
    public func poll() -> Termination? {
        (try? wait(until: .now())) ?? nil
    }

    /// Waits for the child to exit until the deadline; nil if it is still running then.
    public func wait(until deadline: Deadline) throws(SystemError) -> Termination? {
        if let t = lock.withLock({ termination }) { return t }
        guard try pidfd.waitReadable(until: deadline) else { return nil }
        return lock.withLock { () -> Termination? in
            if let t = termination { return t }
            var status: Int32 = 0
            var r: pid_t
            repeat { r = waitpid(pid, &status, WNOHANG) } while r < 0 && errno == EINTR
            guard r == pid else { return nil }
            ChildRegistry.shared.release(pid)
            let t = Termination(waitStatus: status)
            termination = t
            return t
        }
    }

    /// SIGTERM, then SIGKILL after `grace` seconds; always reaps. Returns how it ended.
    @discardableResult
    public func terminate(grace: Double = 2) -> Termination {
        if let t = poll() { return t }
        signal(SIGTERM)
        if let t = try? wait(until: .after(seconds: grace)) { return t }
        return kill()
    }

    /// SIGKILL and reap. A process stuck in uninterruptible sleep cannot be reaped; after
    /// 10 s this gives up (the zombie is reaped by whoever inherits it) rather than hang.
    @discardableResult
    public func kill() -> Termination {
        signal(SIGKILL)
        if let t = try? wait(until: .after(seconds: 10)) { return t }
        return .signalled(SIGKILL)
    }
}
