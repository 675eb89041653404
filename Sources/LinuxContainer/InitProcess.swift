#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import CSupport
import OCI
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// The container's first process before it becomes the user's program: it runs inside the new
/// namespaces (`cocoon init`, a fresh exec, so a single thread), prepares the root file system
/// and the process attributes, tells the runtime it is ready, waits for `start`, and execs.
/// Every failure is reported to the runtime with the step that failed.
public enum InitProcess {
    public static let syncFDEnvironment = "_COCOON_INIT_SYNC_FD"

    public static func main(environment: [String: String]) -> Never {
        guard let raw = environment[syncFDEnvironment].flatMap(Int32.init), raw >= 3 else {
            writeToStandardError("cocoon-init is internal: it is started by `cocoon create`\n")
            exit(2)
        }
        let sync = SyncSocket(fd: FileDescriptor(adopting: raw))
        do {
            guard let config = try sync.receive(InitConfig.self, until: .after(seconds: 60)) else { exit(1) }
            let prepared = try prepare(config, sync: sync)
            try sync.send(InitReport.ready)
            if config.execMode {
            if let fd = config.timeNamespaceFD {
                try check("join the container's time namespace", cocoon_setns_time(fd))
                close(fd)
            }
                sync.fd.close()
                try execute(prepared)
            }
            try waitForStart(prepared.fifo)
            sync.fd.close()
            // startContainer hooks: in the container, after start, before the program.
            try HookRunner.run(config.spec.hooks?.startContainer, kind: "startContainer",
                               state: config.hookState(.running, pid: getpid()))
            try execute(prepared)
        } catch {
            // The runtime reports the failure; print it only when the runtime is no longer listening
            // (after start, the program's stderr is where it can be seen).
            if (try? sync.send(InitReport.failed(error))) == nil {
                writeToStandardError("cocoon-init: \(error.message)\n")
            }
            exit(1)
        }
    }

    struct Prepared {
        let fifo: Int32
        let path: String
        let argv: [String]
        let env: [String]
        let process: OCI.Process
        let noNewPrivileges: Bool
        let seccomp: SeccompFilter.Compiled?
    }

    static func check(_ step: @autoclosure () -> String, _ r: Int32) throws(LinuxContainerError) {
        if r != 0 {
            let e = errno
            throw LinuxContainerError(e == EPERM || e == EACCES ? .permissionDenied : .internal, step: step(), String(cString: strerror(e)))
        }
    }

    static func prepare(_ config: InitConfig, sync: SyncSocket) throws(LinuxContainerError) -> Prepared {
        let spec = config.spec
        guard let process = spec.process else {
            throw LinuxContainerError(.invalidArgument, step: "config", "process is missing")
        }
        if config.execMode {
            if let console = config.consoleSocketFD { try setUpTerminal(console: console, size: process.consoleSize) }
            try applyLimits(process)
            let env = process.env ?? []
            let path = try lookPath((process.args ?? [])[0], env: env)
            try check("chdir \(process.cwd)", chdir(process.cwd))
            return Prepared(fifo: -1, path: path, argv: process.args ?? [], env: env, process: process,
                            noNewPrivileges: process.noNewPrivileges ?? false,
                            seccomp: try compileSeccomp(config.spec.linux?.seccomp))
        }
        // Opened before pivot_root, while the host path is reachable; O_PATH so it does not block.
        let fifo = cocoon_open_path(config.execFifo)
        guard fifo >= 0 else { throw LinuxContainerError(step: "open exec fifo", String(cString: strerror(errno))) }

        // Init is usually in its cgroup from the start (see ContainerRuntime.create); where the runtime must
        // move it by pid, which waits for an RCU grace period, that happens while init makes its mounts, and
        // init waits for it only before the first step that must happen inside the cgroup.
        var inCgroup = false
        func awaitCgroup() throws(LinuxContainerError) {
            if inCgroup { return }
            switch try sync.receive(InitCommand.self, until: .after(seconds: 60)) {
            case .joinedCgroup: break
            case .abort(let why): throw LinuxContainerError(.aborted, step: "join cgroup", why)
            case .proceed: throw LinuxContainerError(.internal, step: "join cgroup", "the runtime skipped the cgroup")
            case nil: throw LinuxContainerError(.aborted, step: "join cgroup", "the runtime went away")
            }
            inCgroup = true
            // The cgroup namespace's root is the cgroup init is in when it unshares.
            if config.newCgroupNamespace {
                try check("unshare cgroup namespace", cocoon_unshare(0x0200_0000))
            }
        }
        if config.newUserNamespace {
            // Become root of the new user namespace (ids were mapped by the runtime already).
            try check("setresgid 0", cocoon_setresgid(0))
            try check("setresuid 0", cocoon_setresuid(0))
        }
        if config.newTimeNamespace { try enterTimeNamespace(offsets: spec.linux?.timeOffsets ?? [:]) }
        let rootfs = RootFS(config: config)
        if config.newMountNamespace { try rootfs.mountAll(inCgroup: awaitCgroup) }
        try awaitCgroup()
        let hooks = config.spec.hooks
        if !(hooks?.prestart ?? []).isEmpty || !(hooks?.createRuntime ?? []).isEmpty {
            try sync.send(InitReport.runtimeHooks)
            switch try sync.receive(InitCommand.self, until: .after(seconds: HookRunner.defaultTimeout * 4)) {
            case .proceed: break
            case .joinedCgroup: throw LinuxContainerError(.internal, step: "runtime hooks", "the runtime skipped the hooks")
            case .abort(let why): throw LinuxContainerError(.aborted, step: "runtime hooks", why)
            case nil: throw LinuxContainerError(.aborted, step: "runtime hooks", "the runtime went away")
            }
        }
        // createContainer hooks: in the container's namespaces, before pivot_root.
        try HookRunner.run(hooks?.createContainer, kind: "createContainer", state: config.hookState(.creating, pid: getpid()))
        if config.newMountNamespace { try rootfs.finish() }
        if spec.linux?.namespaces?.contains(where: { $0.type == .network && $0.path == nil }) == true {
            try check("set the loopback interface up", cocoon_loopback_up())
        }
        if let hostname = spec.hostname { try check("sethostname \(hostname)", cocoon_sethostname(hostname)) }
        if let domain = spec.domainname { try check("setdomainname \(domain)", cocoon_setdomainname(domain)) }
        for (key, value) in (spec.linux?.sysctl ?? [:]).sorted(by: { $0.key < $1.key }) {
            let path = "/proc/sys/" + key.split(separator: ".").joined(separator: "/")
            do throws(SystemError) {
                try Files.writeString(path, value)
            } catch {
                throw LinuxContainerError(step: "sysctl \(key)", error.message)
            }
        }
        if let personality = spec.linux?.personality {
            let persona: UInt = personality.domain == "LINUX32" ? 0x0008 : 0x0000  // PER_LINUX32, PER_LINUX
            try check("personality \(personality.domain)", cocoon_personality(persona))
        }
        if config.newMountNamespace { try rootfs.seal() }
        if let console = config.consoleSocketFD { try setUpTerminal(console: console, size: process.consoleSize) }
        try applyLimits(process)
        let env = process.env ?? []
        let args = process.args ?? []
        let path = try lookPath(args[0], env: env)
        try check("chdir \(process.cwd)", chdir(process.cwd))
        return Prepared(fifo: fifo, path: path, argv: args, env: env, process: process,
                        noNewPrivileges: process.noNewPrivileges ?? false,
                        seccomp: try compileSeccomp(spec.linux?.seccomp))
    }

    /// A new time namespace for the container's program: unshare affects only this process's future
    /// children and its own next execve, so the offsets can be written while nothing is in it yet.
    static func enterTimeNamespace(offsets: [String: TimeOffset]) throws(LinuxContainerError) {
        try check("unshare time namespace", cocoon_unshare(0x80))  // CLONE_NEWTIME
        let lines = offsets.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.secs ?? 0) \($0.value.nanosecs ?? 0)\n" }
        guard !lines.isEmpty else { return }
        // One write: the kernel applies the whole list or none of it.
        do throws(SystemError) { try Files.writeString("/proc/self/timens_offsets", lines.joined()) } catch {
            throw LinuxContainerError(error.code, step: "write linux.timeOffsets to /proc/self/timens_offsets", error.message)
        }
    }

    static func compileSeccomp(_ profile: Seccomp?) throws(LinuxContainerError) -> SeccompFilter.Compiled? {
        guard let profile else { return nil }
        return try SeccompFilter(profile: profile).compile()
    }

    static func applyLimits(_ process: OCI.Process) throws(LinuxContainerError) {
        for r in process.rlimits ?? [] {
            try check("setrlimit \(r.type)", cocoon_setrlimit(Rlimits.names[r.type] ?? -1, r.soft, r.hard))
        }
        if let adj = process.oomScoreAdj {
            do throws(SystemError) { try Files.writeString("/proc/self/oom_score_adj", "\(adj)") } catch {
                throw LinuxContainerError(step: "oom_score_adj", error.message)
            }
        }
    }

    /// A pty from the container's own devpts: the master goes to the console socket, the slave becomes
    /// stdin/stdout/stderr and the controlling terminal of a new session.
    static func setUpTerminal(console: Int32, size: Box?) throws(LinuxContainerError) {
        var master: Int32 = -1
        var name = [CChar](repeating: 0, count: 128)
        try check("open /dev/ptmx", cocoon_open_pty(&master, &name, name.count))
        let slavePath = String(cString: name)
        let slave = open(slavePath, O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard slave >= 0 else { throw LinuxContainerError(step: "open \(slavePath)", String(cString: strerror(errno))) }
        if let size { _ = cocoon_set_winsize(slave, size.height, size.width) }
        try check("send the terminal to the console socket", cocoon_send_fd(console, master, "/dev/ptmx"))
        close(master)
        close(console)
        try check("setsid", setsid() < 0 ? -1 : 0)
        for fd: Int32 in 0...2 { try check("dup2 \(slavePath)", dup2(slave, fd) < 0 ? -1 : 0) }
        try check("make \(slavePath) the controlling terminal", cocoon_set_ctty(0))
        close(slave)
    }

    /// Finds the program as execve would be asked to, in the container's PATH.
    static func lookPath(_ name: String, env: [String]) throws(LinuxContainerError) -> String {
        func executable(_ p: String) -> Bool {
            var st = stat()
            return stat(p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG && access(p, X_OK) == 0
        }
        if name.contains("/") {
            guard executable(name) else {
                throw LinuxContainerError(.notFound, step: "exec \(name)", "no such executable file in the container")
            }
            return name
        }
        let pathVar = env.last { $0.hasPrefix("PATH=") }.map { String($0.dropFirst(5)) }
            ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        for dir in pathVar.split(separator: ":") where executable("\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        throw LinuxContainerError(.notFound, step: "exec \(name)", "executable file not found in $PATH (\(pathVar))")
    }

    /// Blocks until `cocoon start` opens the FIFO's read end, then tells it we are going.
    static func waitForStart(_ fifo: Int32) throws(LinuxContainerError) {
        let fd = open("/proc/self/fd/\(fifo)", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LinuxContainerError(step: "open exec fifo for writing", String(cString: strerror(errno))) }
        var zero: UInt8 = 0x30
        guard write(fd, &zero, 1) == 1 else { throw LinuxContainerError(step: "write exec fifo", String(cString: strerror(errno))) }
        close(fd)
        close(fifo)
    }

    /// Drops to the user and capabilities of the spec and execs. Runs on one thread, so the
    /// credentials, capabilities and no_new_privs of this thread are what the program gets.
    static func execute(_ p: Prepared) throws(LinuxContainerError) -> Never {
        // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we have it (runc's order).
        if let seccomp = p.seccomp, !p.noNewPrivileges { try seccomp.load() }
        try Credentials.apply(user: p.process.user, capabilities: p.process.capabilities)
        if p.noNewPrivileges { try check("no_new_privs", cocoon_set_no_new_privs()) }
        // With it, as late as possible: only execve and what follows run under the filter.
        if let seccomp = p.seccomp, p.noNewPrivileges { try seccomp.load() }
        if let umask = p.process.user.umask { _ = Glibc.umask(mode_t(umask)) }
        closeDescriptors(above: 2)
        // An ignored signal stays ignored across execve: give the program the default SIGPIPE.
        signal(SIGPIPE, SIG_DFL)
        let argv = p.argv.map { strdup($0) } + [nil]
        let envp = p.env.map { strdup($0) } + [nil]
        execve(p.path, argv, envp)
        throw LinuxContainerError(step: "exec \(p.path)", String(cString: strerror(errno)))
    }

    /// Marks every descriptor above `fd` close-on-exec, so nothing of the runtime leaks in.
    static func closeDescriptors(above fd: Int32) {
        let fds = Files.entries("/proc/self/fd").compactMap { Int32($0.name) }.filter { $0 > fd }
        for n in fds { _ = cocoon_set_cloexec(n) }
    }
}

extension InitConfig {
    /// The state hooks receive on stdin.
    func hookState(_ status: State.Status, pid: Int32) -> State {
        State(id: containerID, status: status, pid: pid, bundle: bundle, rootfs: rootfs, created: "",
              annotations: spec.annotations)
    }
}
