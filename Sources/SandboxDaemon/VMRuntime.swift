import AgentAPI
import Cgroups
import CSupport
import Config
import Foundation
import LinuxContainer
import Logging
import OCI
import Processes
import Sandbox
import StatusCodes
import SystemCalls
import Systemd

/// The runc command line with VM isolation: each command is a short process; the VM lives in a
/// per-sandbox daemon, and each container process and exec has a host-side stand-in (see StandIn).
/// Container records and the daemons' control sockets live under `--root`; the daemons' run
/// directories (QEMU's and virtiofsd's sockets, whose paths have at most 107 bytes) under the
/// configured runtime.root.
public struct VMRuntime: Sendable {
    public let config: Configuration
    public let store: VMContainerStore
    /// Where sandbox run directories go: `<sandboxRoot>/sandboxes/<name>`.
    public let sandboxRoot: String
    public let launcher: Launcher
    /// `--systemd-cgroup`: a new container's host cgroup is a transient scope named by its cgroupsPath.
    public let systemdCgroup: Bool
    let logger: Logger

    /// How to start this program again as a daemon or a stand-in, with the caller's global options.
    public struct Launcher: Sendable {
        public var executable: String
        public var globalArguments: [String]
        public init(executable: String, globalArguments: [String]) {
            self.executable = executable
            self.globalArguments = globalArguments
        }
    }

    public init(config: Configuration, stateRoot: String, sandboxRoot: String, launcher: Launcher, systemdCgroup: Bool = false,
                logger: Logger) {
        self.config = config
        self.systemdCgroup = systemdCgroup
        self.store = VMContainerStore(root: stateRoot)
        self.sandboxRoot = sandboxRoot
        self.launcher = launcher
        self.logger = logger
    }

    /// The configuration the daemon boots with: run directories under `sandboxRoot`.
    public var daemonConfiguration: Configuration {
        var c = config
        c.runtime.root = sandboxRoot
        return c
    }

    public struct CreateOptions: Sendable {
        public var pidFile: String?
        /// A connected console socket (process.terminal).
        public var consoleSocket: Int32?
        public init() {}
    }

    // MARK: - create

    public func create(id: String, bundle: String, options: CreateOptions) throws(SandboxDaemonError) {
        try Self.validate(id: id)
        try store.checkNotReserved(id)
        let bundle = URL(fileURLWithPath: bundle).standardizedFileURL.path
        let spec: Spec
        do throws(OCIError) { spec = try Spec.load(bundle: bundle) } catch {
            throw SandboxDaemonError(error, context: "")
        }
        guard let root = spec.root else {
            throw SandboxDaemonError(.invalidArgument, "\(bundle)/config.json: root: required to create a container")
        }
        guard let process = spec.process else {
            throw SandboxDaemonError(.invalidArgument, "\(bundle)/config.json: process: required to create a container")
        }
        let terminal = process.terminal == true
        if terminal && options.consoleSocket == nil {
            throw SandboxDaemonError(.invalidArgument,
                "\(bundle)/config.json: process.terminal is true: a console socket is required (--console-socket)")
        }
        if !terminal && options.consoleSocket != nil {
            throw SandboxDaemonError(.invalidArgument, "--console-socket was given but \(bundle)/config.json: process.terminal is not true")
        }
        let rootfs = root.path.hasPrefix("/") ? root.path : bundle + "/" + root.path
        guard Files.exists(rootfs) else {
            throw SandboxDaemonError(.notFound, "\(bundle)/config.json: root.path: \(rootfs) does not exist")
        }

        // The pod this container joins (CRI-O and containerd's CRI give its sandbox id), else a VM of its own.
        let joined = try podSandbox(of: spec, id: id)
        // A new sandbox's host cgroup holds its VM and is limited to what the VM was sized for.
        let hostLimits = joined == nil ? hostMemoryLimit(spec: spec) : nil
        // systemd first: a bad cgroupsPath or an absent systemd fails before anything is made.
        var scope: (path: SystemdCgroupPath, manager: SystemdManager)?
        if systemdCgroup {
            let path: SystemdCgroupPath
            do throws(SystemdError) { path = try SystemdCgroupPath(spec.linux?.cgroupsPath, containerID: id) } catch {
                throw SandboxDaemonError(error.code, "\(bundle)/config.json: \(error.message)")
            }
            do throws(SystemdError) { scope = (path, try SystemdManager()) } catch {
                throw SandboxDaemonError(error, context: "--systemd-cgroup")
            }
        }

        let dir = store.directory(id)
        do { try Files.makeDirectories(store.root, mode: 0o711) } catch {
            throw SandboxDaemonError(error, context: "create state root \(store.root)")
        }
        guard mkdir(dir, 0o700) == 0 else {
            if errno == EEXIST { throw SandboxDaemonError(.alreadyExists, "container \(id) already exists") }
            throw SandboxDaemonError(.internal, "create \(dir): \(String(cString: strerror(errno)))")
        }
        var standIn: ChildProcess?
        var daemon: ChildProcess?
        var succeeded = false
        var scopeStarted = false
        // The container's cgroup on the host (its cgroupsPath): the stand-in joins it, and with a new
        // sandbox the daemon, QEMU and virtiofsd too, so what the host accounts to the container (what
        // containerd's runc shim and `docker stats` read through the stand-in's PID) is what its VM costs.
        // Under --systemd-cgroup it is the scope's, made when the scope starts with the stand-in.
        let hostCgroup: CgroupManager
        do throws(CgroupError) {
            hostCgroup = try CgroupManager(cgroupsPath: scope?.path.cgroupPath ?? spec.linux?.cgroupsPath, containerID: id)
            if scope == nil { try hostCgroup.create() }
        } catch {
            Files.removeTree(dir)
            throw SandboxDaemonError(error.code, "\(bundle)/config.json: linux.cgroupsPath: \(error.message)")
        }
        defer {
            if !succeeded {
                standIn?.kill()
                if let daemon {
                    daemon.signal(SIGTERM)
                    if (try? daemon.wait(until: .after(seconds: 15))) == nil { daemon.kill() }
                }
                if scopeStarted, let scope { try? scope.manager.stopUnit(scope.path.unit) }
                try? hostCgroup.destroy()
                Files.removeTree(dir)
            }
        }
        if scope == nil, let hostLimits { try limitHostMemory(hostCgroup, hostLimits, bundle: bundle) }

        // The stand-in, in the container's network namespace.
        var spawn = ChildProcess.Options()
        spawn.newSession = true
        spawn.killWithParent = false
        var namespaceFD: FileDescriptor?
        defer { namespaceFD?.close() }
        if let joined, joined.standInIsAlive {
            namespaceFD = try openNamespace("/proc/\(joined.standInPID)/ns/net", field: "the pod's network namespace")
        } else if let ns = spec.linux?.namespaces?.first(where: { $0.type == .network }) {
            if let path = ns.path, !path.isEmpty {
                namespaceFD = try openNamespace(path, field: "\(bundle)/config.json: linux.namespaces (network).path")
            } else {
                spawn.cloneFlags = 0x4000_0000  // CLONE_NEWNET
            }
        } else {
            logger.warning("\(bundle)/config.json asks for the host's network namespace, which a VM cannot take over: the container gets loopback only")
        }
        if let fd = namespaceFD { spawn.joinNamespaces = [fd.rawValue] }
        let sync = try Self.socketPair()
        var syncParent: FileDescriptor? = sync.0
        defer { syncParent?.close() }
        // With a terminal the stdio is the pty's; the caller's descriptors may be a pipe that the
        // caller reads to its end (containerd's runc shim collects `create`'s output so): not kept.
        let devNull = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { if devNull >= 0 { close(devNull) } }
        let stdio: [Int32?] = terminal ? [devNull, devNull, devNull] : [0, 1, 2]
        spawn.fds = stdio + [sync.1.rawValue] + (options.consoleSocket.map { [$0] } ?? [])
        let name = Self.sandboxName(root: store.root, id: id)
        let runDirectory = joined?.runDirectory ?? "\(sandboxRoot)/sandboxes/\(name)"
        let controlSocket = joined?.controlSocketPath ?? store.controlSocket(sandboxName: name)
        if joined == nil {
            do { try Files.makeDirectories(store.daemonsDirectory, mode: 0o700) } catch {
                throw SandboxDaemonError(error, context: "create \(store.daemonsDirectory)")
            }
        }
        var arguments = ["stand-in", "--control-socket", controlSocket, "--container", id, "--bundle", bundle,
                         "--start-timeout", "\(Int(config.hypervisor.bootTimeoutSeconds) + 120)"]
        if terminal { arguments.append("--terminal") }
        // A scope can only be started with its first process: the stand-in, which waits for "go" before
        // anything else, is moved in by systemd and then by cocoon in the hierarchies systemd leaves alone.
        standIn = try Self.spawn(launcher.executable, launcher.globalArguments + arguments, options: spawn,
                                 into: scope == nil ? hostCgroup : nil, what: "the stand-in process for \(id)")
        sync.1.close()
        let standInPID = standIn!.pid
        if let scope {
            do throws(SystemdError) {
                let properties = try UnitProperties.resources(hostLimits, mode: hostCgroup.mode)
                try scope.manager.startScope(scope.path.unit, slice: scope.path.slice, pid: standInPID,
                                             description: "cocoon VM container \(id)", properties: properties)
            } catch {
                throw SandboxDaemonError(error.code, "\(bundle)/config.json: linux.cgroupsPath: \(error.message)")
            }
            scopeStarted = true
            // systemd made the scope's cgroup only in the hierarchies it manages; cocoon makes the rest.
            do throws(CgroupError) {
                try hostCgroup.create()
                try hostCgroup.join(pid: standInPID)
            } catch {
                throw SandboxDaemonError(error.code, "the host cgroup \(hostCgroup.path) of \(id): \(error.message)")
            }
            if let hostLimits { try limitHostMemory(hostCgroup, hostLimits, bundle: bundle) }
        }
        let standInStart = ProcessInfoReader.startTime(pid: standInPID) ?? 0
        let created = Self.timestamp()

        // prestart and createRuntime run on the host, in the runtime's namespace, with the stand-in's PID.
        let creating = State(id: id, status: .creating, pid: standInPID, bundle: bundle, rootfs: rootfs, created: created,
                             owner: "", annotations: spec.annotations)
        do throws(LinuxContainerError) {
            try HookRunner.run(spec.hooks?.prestart, kind: "prestart", state: creating)
            try HookRunner.run(spec.hooks?.createRuntime, kind: "createRuntime", state: creating)
        } catch {
            throw SandboxDaemonError(error, context: "")
        }

        var daemonPID = joined?.daemonPID ?? 0
        var daemonStart = joined?.daemonStartTime ?? 0
        if joined == nil {
            // The hooks have configured the namespace: now the VM can take it over.
            let netns = spawn.cloneFlags != 0 || namespaceFD != nil ? "/proc/\(standInPID)/ns/net" : nil
            daemon = try startDaemon(name: name, bundle: bundle, networkNamespace: netns, controlSocket: controlSocket,
                                     logPath: dir + "/daemon.log", cgroup: hostCgroup)
            daemonPID = daemon!.pid
            daemonStart = ProcessInfoReader.startTime(pid: daemonPID) ?? 0
        }

        StandIn.writeLine(syncParent!, "go")
        let answer = StandIn.readLine(syncParent!, until: .after(seconds: Sandbox.requestTimeout + 30)) ?? ""
        guard answer.hasPrefix("ok ") else {
            throw Self.reported(answer, what: "creating container \(id) in the VM",
                                orElse: "the stand-in process for \(id) ended without an answer")
        }
        syncParent?.close()
        syncParent = nil

        var record = VMContainerRecord(
            id: id, bundle: bundle, rootfs: rootfs, created: created, owner: "", annotations: spec.annotations,
            sandboxName: URL(fileURLWithPath: runDirectory).lastPathComponent, runDirectory: runDirectory,
            daemonPID: daemonPID, daemonStartTime: daemonStart, standInPID: standInPID, standInStartTime: standInStart,
            controlSocket: controlSocket, hostCgroup: hostCgroup.path, poststart: spec.hooks?.poststart, poststop: spec.hooks?.poststop)
        record.systemdUnit = scope?.path.unit
        try store.save(record)
        if let pidFile = options.pidFile { try Self.writePIDFile(pidFile, standInPID) }
        succeeded = true
    }

    /// The host cgroup of a new sandbox holds its VM: limited to the VM's RAM plus what QEMU,
    /// virtiofsd and cocoon need beside it, so a guest (or a QEMU bug) cannot take more of the host
    /// than the VM was sized for. The container's own limits are enforced in the guest; copying them
    /// here would OOM-kill QEMU, whose RAM alone is the limit plus the guest's overhead.
    func hostMemoryLimit(spec: Spec) -> Resources? {
        let overhead = config.hypervisor.hostMemoryOverheadMiB
        guard overhead > 0 else { return nil }
        let vm = VMSizing.size(for: spec.linux?.resources, config: config.hypervisor)
        var resources = Resources()
        resources.memory = MemoryResources()
        resources.memory?.limit = Int64(vm.memoryMiB + overhead) << 20
        return resources
    }

    func limitHostMemory(_ cgroup: CgroupManager, _ limits: Resources, bundle: String) throws(SandboxDaemonError) {
        do throws(CgroupError) { try cgroup.apply(limits) } catch {
            throw SandboxDaemonError(error.code, "the host cgroup of \(bundle)'s VM: \(error.message)")
        }
    }

    private func openNamespace(_ path: String, field: String) throws(SandboxDaemonError) -> FileDescriptor {
        do throws(SystemError) {
            return try FileDescriptor.open(path, O_RDONLY | O_CLOEXEC)
        } catch {
            throw SandboxDaemonError(.notFound, "\(field): \(path): \(error.message)")
        }
    }

    /// The record of the pod sandbox this container belongs to, when its annotations name one that
    /// this root holds; nil for a sandbox (pause) container or a container of its own.
    func podSandbox(of spec: Spec, id: String) throws(SandboxDaemonError) -> VMContainerRecord? {
        let annotations = spec.annotations ?? [:]
        guard let type = Self.containerTypeAnnotations.lazy.compactMap({ annotations[$0] }).first, type == "container",
              let sandboxID = Self.sandboxIDAnnotations.lazy.compactMap({ annotations[$0] }).first, sandboxID != id else { return nil }
        let record: VMContainerRecord
        do throws(SandboxDaemonError) { record = try store.load(sandboxID) } catch {
            throw SandboxDaemonError(.notFound, "the pod sandbox \(sandboxID) named by the annotations of \(id) does not exist under \(store.root)")
        }
        guard record.daemonIsAlive else {
            throw SandboxDaemonError(.failedPrecondition, "the VM of pod sandbox \(sandboxID) is not running")
        }
        return record
    }

    public static let sandboxIDAnnotations = ["io.kubernetes.cri.sandbox-id", "io.kubernetes.cri-o.SandboxID"]
    public static let containerTypeAnnotations = ["io.kubernetes.cri.container-type", "io.kubernetes.cri-o.ContainerType"]

    /// Spawns a child that is in `cgroup` before it execs, so that what it starts (QEMU, virtiofsd) is in
    /// there too: on cgroup v1 it moves itself in (no grace-period wait, see CgroupManager.openTaskFiles);
    /// elsewhere it waits until it has been moved by pid.
    static func spawn(_ executable: String, _ arguments: [String], options: ChildProcess.Options, into cgroup: CgroupManager?,
                      what: String) throws(SandboxDaemonError) -> ChildProcess {
        guard let cgroup else {
            do throws(SystemError) { return try ChildProcess.spawn(executable, arguments, options: options) } catch {
                throw SandboxDaemonError(error, context: "start \(what)")
            }
        }
        let taskFiles: [FileDescriptor]
        do throws(CgroupError) { taskFiles = try cgroup.openTaskFiles() } catch {
            throw SandboxDaemonError(error.code, "\(what): \(error.message)")
        }
        defer { taskFiles.forEach { $0.close() } }
        if !taskFiles.isEmpty {
            var options = options
            options.cgroupTaskDescriptors = taskFiles.map(\.rawValue)
            do throws(SystemError) { return try ChildProcess.spawn(executable, arguments, options: options) } catch {
                throw SandboxDaemonError(error, context: "start \(what)")
            }
        }
        let gate: (read: FileDescriptor, write: FileDescriptor)
        do throws(SystemError) { gate = try FileDescriptor.pipe() } catch {
            throw SandboxDaemonError(error, context: "start \(what)")
        }
        defer { gate.write.close() }
        var options = options
        options.waitDescriptor = gate.read.rawValue
        let child: ChildProcess
        do throws(SystemError) {
            child = try ChildProcess.spawn(executable, arguments, options: options)
        } catch {
            gate.read.close()
            throw SandboxDaemonError(error, context: "start \(what)")
        }
        gate.read.close()
        do throws(CgroupError) { try cgroup.join(pid: child.pid) } catch {
            child.kill()
            throw SandboxDaemonError(error.code, "\(what): \(error.message)")
        }
        var one: UInt8 = 1
        _ = write(gate.write.rawValue, &one, 1)
        return child
    }

    private func startDaemon(name: String, bundle: String, networkNamespace: String?, controlSocket: String, logPath: String,
                             cgroup: CgroupManager) throws(SandboxDaemonError) -> ChildProcess {
        let ready: (read: FileDescriptor, write: FileDescriptor)
        do throws(SystemError) { ready = try FileDescriptor.pipe() } catch {
            throw SandboxDaemonError(error, context: "start the sandbox daemon")
        }
        defer { ready.read.close() }
        let devNull = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { if devNull >= 0 { close(devNull) } }
        var spawn = ChildProcess.Options()
        spawn.newSession = true
        spawn.killWithParent = false
        spawn.fds = [devNull, devNull, devNull, ready.write.rawValue]
        // The daemon's own log (the caller's --log is for the command's errors, which containerd reads).
        var global = launcher.globalArguments
        if let i = global.firstIndex(of: "--log"), i + 1 < global.count { global.removeSubrange(i...(i + 1)) }
        if let i = global.firstIndex(of: "--log-format"), i + 1 < global.count { global.removeSubrange(i...(i + 1)) }
        var arguments = global + ["--log", logPath, "--root", sandboxRoot, "sandbox-daemon", "--name", name, "--bundle", bundle,
                                  "--control-socket", controlSocket]
        if let networkNamespace { arguments += ["--network-namespace", networkNamespace] }
        let daemon: ChildProcess
        do throws(SandboxDaemonError) {
            daemon = try Self.spawn(launcher.executable, arguments, options: spawn, into: cgroup, what: "the sandbox daemon")
        } catch {
            ready.write.close()
            throw error
        }
        ready.write.close()
        let line = StandIn.readLine(ready.read, until: .after(seconds: config.hypervisor.bootTimeoutSeconds + 60)) ?? ""
        guard line == "ready" else {
            let tail = ((try? Files.readString(logPath)) ?? "").split(separator: "\n").suffix(5).joined(separator: "\n  ")
            throw Self.reported(line, what: "the sandbox daemon",
                                orElse: "the sandbox daemon ended before it was ready" + (tail.isEmpty ? "" : "; its log ends:\n  " + tail))
        }
        return daemon
    }

    /// An "error <code> <message>" line from a daemon or stand-in as an error.
    static func reported(_ line: String, what: String, orElse: String) -> SandboxDaemonError {
        let parts = line.split(separator: " ", maxSplits: 2)
        if parts.count == 3, parts[0] == "error", let raw = Int32(parts[1]), let code = StatusCode(rawValue: raw) {
            return SandboxDaemonError(code, String(parts[2]))
        }
        return SandboxDaemonError(.unavailable, line.isEmpty ? orElse : "\(what): unexpected answer '\(line)'")
    }

    // MARK: - after create

    /// A connection to the container's daemon, or why there is none (the VM is gone: stopped).
    func connect(_ record: VMContainerRecord) -> DaemonConnection? {
        guard record.daemonIsAlive else { return nil }
        return try? DaemonConnection(controlSocket: record.controlSocketPath, logger: logger)
    }

    public func state(_ id: String) throws(SandboxDaemonError) -> State {
        let record = try store.load(id)
        return State(id: id, status: status(record), pid: record.standInPID, bundle: record.bundle, rootfs: record.rootfs,
                     created: record.created, owner: record.owner, annotations: record.annotations)
    }

    /// The daemon's view; stopped when the daemon or the stand-in is gone (the stand-in is the
    /// process the caller tracks).
    func status(_ record: VMContainerRecord) -> State.Status {
        guard record.standInIsAlive, let connection = connect(record) else { return .stopped }
        defer { connection.close() }
        guard let s = try? connection.state(record.id) else { return .stopped }
        return State.Status(rawValue: s.status) ?? .stopped
    }

    private func liveConnection(_ id: String, for action: String) throws(SandboxDaemonError) -> (VMContainerRecord, DaemonConnection) {
        let record = try store.load(id)
        guard let connection = connect(record) else {
            throw SandboxDaemonError(.notFound, "cannot \(action) container \(id): container not running (its VM is gone)")
        }
        return (record, connection)
    }

    public func start(_ id: String) throws(SandboxDaemonError) {
        let (record, connection) = try liveConnection(id, for: "start")
        defer { connection.close() }
        try connection.start(id)
        if record.poststart?.isEmpty == false {
            let started = State(id: id, status: .running, pid: record.standInPID, bundle: record.bundle, rootfs: record.rootfs,
                                created: record.created, owner: record.owner, annotations: record.annotations)
            do throws(LinuxContainerError) { try HookRunner.run(record.poststart, kind: "poststart", state: started) } catch {
                writeToStandardError("warning: \(error.message)\n")
            }
        }
    }

    public func kill(_ id: String, signal: Int32, all: Bool) throws(SandboxDaemonError) {
        let (record, connection) = try liveConnection(id, for: "kill")
        defer { connection.close() }
        let s = (try? connection.state(id))?.status ?? "stopped"
        guard s != "stopped", record.standInIsAlive else {
            throw SandboxDaemonError(.notFound, "container \(id) is not running: container not running")
        }
        do throws(AgentAPIError) {
            try connection.agent.signal(id, signal: signal, all: all, timeout: Sandbox.requestTimeout)
        } catch {
            throw SandboxDaemonError(error, context: "kill \(id)")
        }
    }

    public func delete(_ id: String, force: Bool) throws(SandboxDaemonError) {
        let record: VMContainerRecord
        do throws(SandboxDaemonError) { record = try store.load(id) } catch {
            if error.code == .notFound && force { return }
            throw error
        }
        if let connection = connect(record) {
            defer { connection.close() }
            // A stand-in that is gone (killed) leaves nobody to report the process: it goes too.
            let stopping: Bool
            do throws(SandboxDaemonError) {
                stopping = try connection.delete(id, force: force || !record.standInIsAlive)
            } catch {
                guard error.code == .notFound else { throw error }
                stopping = false
            }
            if stopping { waitForExit(pid: record.daemonPID, start: record.daemonStartTime, what: "the sandbox daemon of \(id)") }
        } else if !record.daemonIsAlive {
            // The daemon died (killed, OOM): QEMU and virtiofsd died with it; remove what it left.
            for stale in StaleSandboxes.sweep(root: sandboxRoot) {
                logger.warning("removed the leftovers of sandbox \(stale), whose daemon is gone")
            }
            unlink(record.controlSocketPath)
        } else {
            throw SandboxDaemonError(.unavailable, "the sandbox daemon of \(id) (pid \(record.daemonPID)) does not answer on \(record.controlSocketPath)")
        }
        if record.standInIsAlive {
            // Its guest process is gone; give it a moment to drain and exit on its own.
            waitForExit(pid: record.standInPID, start: record.standInStartTime, what: "the stand-in of \(id)", grace: 5, kill: true)
        }
        if let path = record.hostCgroup, let cgroup = try? CgroupManager(cgroupsPath: path, containerID: id) {
            // Busy while the daemon it also holds serves the pod's other containers: left to the last delete
            // (a scope systemd stops by itself once its last process is gone).
            if cgroup.processes().isEmpty {
                if let unit = record.systemdUnit {
                    do throws(SystemdError) { try SystemdManager().stopUnit(unit) } catch {
                        logger.warning("container \(id): \(error.message)")
                    }
                }
                do throws(CgroupError) { try cgroup.destroy() } catch {
                    logger.warning("container \(id): \(error.message)")
                }
            } else {
                logger.warning("container \(id): its host cgroup \(path) still holds processes (the pod's daemon); left in place")
            }
        }
        if record.poststop?.isEmpty == false {
            let stopped = State(id: id, status: .stopped, pid: 0, bundle: record.bundle, rootfs: record.rootfs,
                                created: record.created, owner: record.owner, annotations: record.annotations)
            do throws(LinuxContainerError) { try HookRunner.run(record.poststop, kind: "poststop", state: stopped) } catch {
                writeToStandardError("warning: \(error.message)\n")
            }
        }
        Files.removeTree(store.directory(id))
    }

    /// Waits for a process that is not our child to end; SIGKILL after the grace when `kill`.
    func waitForExit(pid: Int32, start: UInt64, what: String, grace: Double = 30, kill: Bool = false) {
        let deadline = Deadline.after(seconds: grace)
        while ProcessInfoReader.startTime(pid: pid) == start && !deadline.hasPassed { sleep(seconds: 0.02) }
        guard ProcessInfoReader.startTime(pid: pid) == start else { return }
        if kill {
            let fd = cocoon_pidfd_open(pid)
            if fd >= 0 {
                if ProcessInfoReader.startTime(pid: pid) == start { _ = cocoon_pidfd_send_signal(fd, SIGKILL) }
                close(fd)
            }
        } else {
            logger.warning("\(what) (pid \(pid)) has not exited after \(grace) s")
        }
    }

    public func processes(_ id: String) throws(SandboxDaemonError) -> [Int32] {
        let record = try store.load(id)
        guard let connection = connect(record) else { return [] }
        defer { connection.close() }
        do throws(AgentAPIError) {
            return try connection.agent.listProcesses(id, timeout: Sandbox.requestTimeout)
        } catch {
            throw SandboxDaemonError(error, context: "ps \(id)")
        }
    }

    public func pause(_ id: String) throws(SandboxDaemonError) {
        let (_, connection) = try liveConnection(id, for: "pause")
        defer { connection.close() }
        try connection.pause(id)
    }

    public func resume(_ id: String) throws(SandboxDaemonError) {
        let (_, connection) = try liveConnection(id, for: "resume")
        defer { connection.close() }
        try connection.resume(id)
    }

    public func update(_ id: String, resources: Resources) throws(SandboxDaemonError) {
        let (_, connection) = try liveConnection(id, for: "update")
        defer { connection.close() }
        let json: Data
        do { json = try JSONEncoder().encode(resources) } catch {
            throw SandboxDaemonError(.invalidArgument, "the resources do not encode: \(error)")
        }
        do throws(AgentAPIError) {
            try connection.agent.update(id, resourcesJSON: Array(json), timeout: Sandbox.requestTimeout)
        } catch {
            throw SandboxDaemonError(error, context: "update \(id)")
        }
    }

    public func stats(_ id: String) throws(SandboxDaemonError) -> Cocoon_Agent_V1_StatsResponse {
        let (_, connection) = try liveConnection(id, for: "read the stats of")
        defer { connection.close() }
        do throws(AgentAPIError) {
            return try connection.agent.stats(id, timeout: Sandbox.requestTimeout)
        } catch {
            throw SandboxDaemonError(error, context: "stats \(id)")
        }
    }

    // MARK: - exec

    public struct ExecOptions: Sendable {
        public var pidFile: String?
        public var consoleSocket: Int32?
        public var detach = false
        public init() {}
    }

    /// Starts a stand-in for a new process in the container. Returns it (our child) so that a
    /// foreground exec can wait for it; a detached exec leaves it to whoever reaps orphans.
    public func exec(_ id: String, process: OCI.Process, options: ExecOptions) throws(SandboxDaemonError) -> ChildProcess {
        let (record, connection) = try liveConnection(id, for: "exec in")
        let status = (try? connection.state(id))?.status
        connection.close()
        guard status == "running" else {
            throw SandboxDaemonError(.failedPrecondition, "cannot exec in container \(id): it is \(status ?? "stopped"), not running")
        }
        let terminal = process.terminal == true
        if terminal && options.consoleSocket == nil {
            throw SandboxDaemonError(.invalidArgument, "the process has a terminal: --console-socket is required")
        }
        let execID = "exec-\(UInt64.random(in: 0...UInt64.max) & 0xffff_ffff_ffff)"
        let processFile = store.directory(id) + "/\(execID).json"
        do {
            let json = try JSONEncoder().encode(process)
            try Files.writeString(processFile, String(decoding: json, as: UTF8.self), mode: 0o600)
        } catch {
            throw SandboxDaemonError(.internal, "write \(processFile): \(error)")
        }
        var spawn = ChildProcess.Options()
        spawn.newSession = true
        spawn.killWithParent = false
        let sync = try Self.socketPair()
        defer { sync.0.close() }
        let devNull = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { if devNull >= 0 { close(devNull) } }
        let stdio: [Int32?] = terminal ? [devNull, devNull, devNull] : [0, 1, 2]
        spawn.fds = stdio + [sync.1.rawValue] + (options.consoleSocket.map { [$0] } ?? [])
        var arguments = ["stand-in", "--control-socket", record.controlSocketPath, "--container", id, "--exec", execID,
                         "--process-file", processFile, "--start-timeout", "30"]
        if terminal { arguments.append("--terminal") }
        let child: ChildProcess
        do throws(SystemError) {
            child = try ChildProcess.spawn(launcher.executable, launcher.globalArguments + arguments, options: spawn)
        } catch {
            sync.1.close()
            unlink(processFile)
            throw SandboxDaemonError(error, context: "start the stand-in process for an exec in \(id)")
        }
        sync.1.close()
        StandIn.writeLine(sync.0, "go")
        let answer = StandIn.readLine(sync.0, until: .after(seconds: Sandbox.requestTimeout + 30)) ?? ""
        guard answer.hasPrefix("ok ") else {
            child.kill()
            unlink(processFile)
            throw Self.reported(answer, what: "exec in \(id)", orElse: "the stand-in process for the exec ended without an answer")
        }
        if let pidFile = options.pidFile { try Self.writePIDFile(pidFile, child.pid) }
        return child
    }

    // MARK: - helpers

    /// The sandbox's rule for container ids (they name directories here and in the guest).
    public static func validate(id: String) throws(SandboxDaemonError) {
        do throws(SandboxError) { try Sandbox.validateContainerID(id) } catch {
            throw SandboxDaemonError(error, context: "")
        }
    }

    /// A sandbox name that fits the run directory's socket paths and differs between state roots:
    /// up to 23 characters of the id and 8 hex digits of a hash of root and id.
    public static func sandboxName(root: String, id: String) -> String {
        var hash: UInt32 = 2_166_136_261  // FNV-1a: stable across runs, unlike Hasher
        for byte in (root + "\u{0}" + id).utf8 {
            hash ^= UInt32(byte)
            hash = hash &* 16_777_619
        }
        return String(id.prefix(23)) + "-" + String(format: "%08x", hash)
    }

    static func socketPair() throws(SandboxDaemonError) -> (FileDescriptor, FileDescriptor) {
        var pair: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw SandboxDaemonError(.resourceExhausted, "socketpair: \(String(cString: strerror(errno)))")
        }
        return (FileDescriptor(adopting: pair[0]), FileDescriptor(adopting: pair[1]))
    }

    static func writePIDFile(_ path: String, _ pid: Int32) throws(SandboxDaemonError) {
        let tmp = path + ".tmp"
        do throws(SystemError) {
            try Files.writeString(tmp, "\(pid)", mode: 0o644)
        } catch {
            throw SandboxDaemonError(error, context: "--pid-file \(path)")
        }
        guard rename(tmp, path) == 0 else {
            throw SandboxDaemonError(.internal, "--pid-file \(path): rename: \(String(cString: strerror(errno)))")
        }
    }

    static func timestamp() -> String {
        Date().formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }
}
