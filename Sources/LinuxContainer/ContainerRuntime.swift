import Cgroups
import CSupport
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import OCI
import Processes
import StatusCodes
import SystemCalls
import DBus
import Systemd

/// The runc-style lifecycle for containers on this host (process isolation).
public struct ContainerRuntime: Sendable {
    public let store: StateStore
    /// The init stage (cocoon-init): started in the new namespaces, it execs the user's program.
    public let initExecutable: String
    /// Set by long-lived callers: one sealed copy of the init stage for every process.
    public let sharedSealedCopy: SealedCopy?
    /// `--systemd-cgroup`: new containers' cgroups are transient systemd scopes named by a
    /// `slice:prefix:name` cgroupsPath, rather than directories cocoon makes itself.
    public let systemdCgroup: Bool

    /// `initIsImmutable`: the init stage's file cannot be written by anyone (the guest's read-only
    /// image); it is then executed as it is, with neither a copy nor a read-only bind mount of itself.
    public init(root: String, initExecutable: String, shareSealedCopy: Bool = false, initIsImmutable: Bool = false,
                systemdCgroup: Bool = false) {
        self.store = StateStore(root: root)
        self.systemdCgroup = systemdCgroup
        self.initExecutable = initExecutable
        self.sharedSealedCopy = shareSealedCopy || initIsImmutable
            ? SealedCopy(of: initExecutable, fileIsImmutable: initIsImmutable) : nil
    }

    public struct CreateOptions: Sendable {
        public var pidFile: String?
        public var noPivot = false
        /// File descriptors 3 ..< 3+preserveFDs of the caller are passed through.
        public var preserveFDs = 0
        /// The container's stdio: the caller's by default.
        public var stdio: [Int32] = [0, 1, 2]
        /// A connected console socket: required when process.terminal is true, refused otherwise.
        public var consoleSocket: Int32?
        public init() {}
    }

    /// What `create` leaves running: the init process, waiting for `start`.
    public struct Created: Sendable {
        public let record: ContainerRecord
        public let process: ChildProcess
    }

    /// `loaded`: the bundle's config.json as the caller already read it (`Spec.load`), so it is decoded once.
    public func create(id: String, bundle: String, loaded: Spec? = nil,
                       options: CreateOptions = CreateOptions()) throws(LinuxContainerError) -> Created {
        try StateStore.validate(id: id)
        let bundle = Self.absolutePath(bundle)
        var spec: Spec
        if let loaded { spec = loaded } else {
            do { spec = try Spec.load(bundle: bundle) } catch {
                throw LinuxContainerError(error.code, step: "", error.message)
            }
        }
        guard spec.process != nil else {
            throw LinuxContainerError(.invalidArgument, step: "", "\(bundle)/config.json: process: required to create a container")
        }
        let terminal = spec.process?.terminal == true
        if terminal && options.consoleSocket == nil {
            throw LinuxContainerError(.invalidArgument, step: "",
                "\(bundle)/config.json: process.terminal is true: a console socket is required (--console-socket)")
        }
        if !terminal && options.consoleSocket != nil {
            throw LinuxContainerError(.invalidArgument, step: "",
                "--console-socket was given but \(bundle)/config.json: process.terminal is not true")
        }
        guard let root = spec.root else {
            throw LinuxContainerError(.invalidArgument, step: "", "\(bundle)/config.json: root: required to create a container")
        }
        let rootfs = root.path.hasPrefix("/") ? root.path : bundle + "/" + root.path
        guard Files.exists(rootfs) else {
            throw LinuxContainerError(.notFound, step: "", "\(bundle)/config.json: root.path: \(rootfs) does not exist")
        }
        // Relative bind sources are relative to the bundle.
        spec.mounts = spec.mounts?.map { m in
            var m = m
            if let s = m.source, !s.hasPrefix("/"), MountOptions(m.options ?? []).isBind { m.source = bundle + "/" + s }
            return m
        }

        // systemd first: a bad cgroupsPath or an absent systemd fails before anything is made.
        var scope: (path: SystemdCgroupPath, manager: SystemdManager, properties: [(String, DBusValue)])?
        if systemdCgroup {
            do throws(SystemdError) {
                let path = try SystemdCgroupPath(spec.linux?.cgroupsPath, containerID: id)
                let properties = try UnitProperties.resources(spec.linux?.resources, mode: CgroupMode.detect())
                scope = (path, try SystemdManager(), properties)
            } catch {
                throw LinuxContainerError(error.code, step: "", error.message)
            }
        }

        let dir = store.directory(id)
        do { try Files.makeDirectories(store.root, mode: 0o711) } catch {
            throw LinuxContainerError(error.code, step: "create state root \(store.root)", error.message)
        }
        // 0711: an init in a user namespace (another uid) must reach the FIFO inside, and list nothing.
        guard mkdir(dir, 0o711) == 0 else {
            if errno == EEXIST { throw LinuxContainerError(.alreadyExists, step: "", "container \(id) already exists") }
            throw LinuxContainerError(step: "create \(dir)", String(cString: strerror(errno)))
        }
        let cgroup: CgroupManager
        do { cgroup = try CgroupManager(cgroupsPath: scope?.path.cgroupPath ?? spec.linux?.cgroupsPath, containerID: id) } catch {
            Files.removeTree(dir)
            throw LinuxContainerError(error.code, step: "", error.message)
        }
        var succeeded = false
        var child: ChildProcess?
        var scopeStarted = false
        defer {
            if !succeeded {
                child?.kill()
                if scopeStarted, let scope { try? scope.manager.stopUnit(scope.path.unit) }
                try? cgroup.destroy()
                Files.removeTree(dir)
            }
        }
        let fifo = store.fifoPath(id)
        guard mkfifo(fifo, 0o622) == 0 else { throw LinuxContainerError(step: "mkfifo \(fifo)", String(cString: strerror(errno))) }
        // Owned by the container's root (mkfifo's mode is subject to umask).
        chmod(fifo, 0o622)
        let rootUID = spec.linux?.uidMappings?.first { $0.containerID == 0 }?.hostID ?? 0
        let rootGID = spec.linux?.gidMappings?.first { $0.containerID == 0 }?.hostID ?? 0
        chown(fifo, rootUID, rootGID)

        // Namespaces: new ones by clone flags, existing ones joined by path (user first).
        var cloneFlags: UInt = 0
        var joins: [(NamespaceType, FileDescriptor)] = []
        var pidNamespace: FileDescriptor?
        for ns in spec.linux?.namespaces ?? [] {
            if let path = ns.path {
                let fd: FileDescriptor
                do { fd = try FileDescriptor.open(path, O_RDONLY) } catch {
                    throw LinuxContainerError(.notFound, step: "join \(ns.type.rawValue) namespace \(path)", error.message)
                }
                if ns.type == .pid { pidNamespace = fd } else { joins.append((ns.type, fd)) }
            } else {
                cloneFlags |= Self.cloneFlag(ns.type)
            }
        }
        joins.sort { a, _ in a.0 == .user }
        let joinsUserNS = joins.contains { $0.0 == .user }
        // The cgroup namespace is unshared by init after it joined its cgroup (see InitConfig).
        let newCgroupNS = cloneFlags & CloneFlag.newCgroup != 0
        cloneFlags &= ~CloneFlag.newCgroup
        // A time namespace made by clone is in use at once, and its offsets can no longer be written.
        let newTimeNS = cloneFlags & CloneFlag.newTime != 0
        cloneFlags &= ~CloneFlag.newTime
        let newUserNS = cloneFlags & CloneFlag.newUser != 0
        let newMountNS = cloneFlags & CloneFlag.newNS != 0

        let (parentSync, childSync): (SyncSocket, SyncSocket)
        do { (parentSync, childSync) = try SyncSocket.pair() } catch {
            throw LinuxContainerError(step: "socketpair", error.message)
        }
        var processOptions = ChildProcess.Options()
        let syncFD = Int32(3 + options.preserveFDs)
        var fds: [Int32?] = options.stdio.map { Optional($0) }
        for i in 0..<options.preserveFDs { fds.append(Int32(3 + i)) }
        fds.append(childSync.fd.rawValue)
        var consoleFD: Int32?
        if let console = options.consoleSocket {
            consoleFD = Int32(fds.count)
            fds.append(console)
        }
        processOptions.fds = fds
        processOptions.environment = [InitProcess.syncFDEnvironment: "\(syncFD)", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        processOptions.newSession = false
        // The container outlives `cocoon create`.
        processOptions.killWithParent = false
        processOptions.cloneFlags = cloneFlags
        processOptions.joinNamespaces = joins.map(\.1.rawValue)
        if joinsUserNS { processOptions.becomeRoot = true }
        processOptions.pidNamespace = pidNamespace?.rawValue
        // CVE-2019-5736: a container that makes the init stage re-execute itself (entrypoint
        // /proc/self/exe) must never be able to write the host's binary through /proc/PID/exe.
        // With a new mount namespace the binary is executed through a read-only bind mount of
        // itself made in that namespace; otherwise from a sealed in-memory copy (9 ms more). A file
        // nobody can write (initIsImmutable) is executed by descriptor as it is.
        var sealed: Int32 = -1
        var closeSealed = false
        defer { if closeSealed { close(sealed) } }
        if newMountNS && sharedSealedCopy?.fileIsImmutable != true {
            processOptions.readOnlyExecutable = true
        } else {
            (sealed, closeSealed) = try sealedInit()
            processOptions.executableDescriptor = sealed
        }
        processOptions.argv0 = "cocoon-init"
        // A new user namespace: the child waits, unexec'd, until its ids are mapped (see below).
        var release: (read: Int32, write: Int32)?
        if newUserNS {
            var p: [Int32] = [0, 0]
            guard pipe(&p) == 0 else { throw LinuxContainerError(step: "pipe", String(cString: strerror(errno))) }
            _ = cocoon_set_cloexec(p[0])
            _ = cocoon_set_cloexec(p[1])
            release = (p[0], p[1])
            processOptions.waitDescriptor = p[0]
            processOptions.becomeRoot = true
        }
        defer { if let release { close(release.read); close(release.write) } }
        // The cgroup is made and limited before init starts, and init never waits for a migration by pid
        // (which waits for an RCU grace period): on cgroup v2 init is born in it (CLONE_INTO_CGROUP); on v1
        // the spawned child moves itself in before exec, through `tasks` descriptors opened here. A systemd
        // scope can only be started with its first process, so under --systemd-cgroup init is moved in
        // after it is spawned (it waits for that, below).
        var taskFiles: [FileDescriptor] = []
        defer { taskFiles.forEach { $0.close() } }
        var bornInCgroup = false
        if scope == nil {
            do throws(CgroupError) {
                try cgroup.create()
                if let resources = spec.linux?.resources { try cgroup.apply(resources) }
                taskFiles = try cgroup.openTaskFiles()
            } catch {
                throw LinuxContainerError(error.code, step: "cgroup \(cgroup.path)", error.message)
            }
            processOptions.cgroupTaskDescriptors = taskFiles.map(\.rawValue)
            bornInCgroup = !taskFiles.isEmpty
            if cgroup.mode == .unified {
                let dir = open(cgroup.directories[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                if dir >= 0 {
                    defer { close(dir) }
                    var into = processOptions
                    into.cgroupDescriptor = dir
                    do throws(SystemError) {
                        child = try ChildProcess.spawn(initExecutable, [], options: into)
                        bornInCgroup = true
                    } catch where error.errno == ENOSYS {
                        // clone3 or CLONE_INTO_CGROUP missing: spawned and moved in by pid below.
                    } catch {
                        throw LinuxContainerError(error.code, step: "start container init", error.message)
                    }
                }
            }
        }
        if child == nil {
            do {
                child = try ChildProcess.spawn(initExecutable, [], options: processOptions)
            } catch {
                throw LinuxContainerError(error.code, step: "start container init", error.message)
            }
        }
        childSync.fd.close()
        let pid = child!.pid
        if newUserNS, let release {
            try writeIDMappings(pid: pid, spec: spec)
            // Mapped: init may exec now, and does so as root of its namespace, with its capabilities.
            var go: UInt8 = 1
            guard write(release.write, &go, 1) == 1 else {
                throw LinuxContainerError(step: "start container init", String(cString: strerror(errno)))
            }
        }
        try parentSync.send(InitConfig(containerID: id, spec: spec, rootfs: rootfs, noPivot: options.noPivot, execFifo: fifo,
                                       preservedFDs: options.preserveFDs, newMountNamespace: newMountNS, newUserNamespace: newUserNS,
                                       newCgroupNamespace: newCgroupNS, newTimeNamespace: newTimeNS, bundle: bundle,
                                       consoleSocketFD: consoleFD))
        if !bornInCgroup {
            // A systemd scope, or cgroup v2 without CLONE_INTO_CGROUP: moved in by pid while init makes its
            // mounts (init waits for `joinedCgroup` before cgroup mounts, devices, hooks and its cgroup namespace).
            do throws(LinuxContainerError) {
                if let scope {
                    do throws(SystemdError) {
                        try scope.manager.startScope(scope.path.unit, slice: scope.path.slice, pid: pid,
                                                     description: "cocoon container \(id)", properties: scope.properties)
                    } catch {
                        throw LinuxContainerError(error.code, step: "systemd scope \(scope.path.unit)", error.message)
                    }
                    scopeStarted = true
                }
                do throws(CgroupError) {
                    if scope != nil {
                        // systemd made the scope's cgroup only in the hierarchies it manages; cocoon makes the
                        // rest, and writes every limit (systemd knows only some).
                        try cgroup.create()
                        if let resources = spec.linux?.resources { try cgroup.apply(resources) }
                    }
                    try cgroup.join(pid: pid)
                } catch {
                    throw LinuxContainerError(error.code, step: "cgroup \(cgroup.path)", error.message)
                }
            } catch {
                try? parentSync.send(InitCommand.abort(error.message))
                throw error
            }
        }
        try parentSync.send(InitCommand.joinedCgroup)
        var report = try parentSync.receive(InitReport.self, until: .after(seconds: 60))
        if case .runtimeHooks = report {
            // prestart (deprecated) and createRuntime: in the runtime's namespaces, before pivot_root.
            let state = State(id: id, status: .creating, pid: pid, bundle: bundle, rootfs: rootfs, created: "",
                              annotations: spec.annotations)
            do {
                try HookRunner.run(spec.hooks?.prestart, kind: "prestart", state: state)
                try HookRunner.run(spec.hooks?.createRuntime, kind: "createRuntime", state: state)
            } catch {
                try? parentSync.send(InitCommand.abort(error.message))
                throw error
            }
            try parentSync.send(InitCommand.proceed)
            report = try parentSync.receive(InitReport.self, until: .after(seconds: 60))
        }
        switch report {
        case .ready: break
        case .runtimeHooks: throw LinuxContainerError(.internal, step: "container init", "asked for runtime hooks twice")
        case .failed(let error): throw error
        case nil:
            let how = (try? child!.wait(until: .after(seconds: 2))).flatMap { $0.map { "\($0)" } } ?? "closed its channel"
            throw LinuxContainerError(step: "container init", "exited before it was ready (\(how))")
        }
        let record = ContainerRecord(id: id, bundle: bundle, rootfs: rootfs, pid: pid,
                                     pidStartTime: ProcessInfoReader.startTime(pid: pid) ?? 0,
                                     created: Self.timestamp(), annotations: spec.annotations, owner: "",
                                     cgroupPath: cgroup.path, poststart: spec.hooks?.poststart, poststop: spec.hooks?.poststop,
                                     systemdUnit: scope?.path.unit)
        try store.save(record)
        if let pidFile = options.pidFile {
            do { try Files.writeString(pidFile, "\(pid)") } catch {
                throw LinuxContainerError(step: "write --pid-file \(pidFile)", error.message)
            }
        }
        succeeded = true
        return Created(record: record, process: child!)
    }

    /// linux/sched.h values (Swift's Glibc module hides them behind _GNU_SOURCE).
    enum CloneFlag {
        static let newTime: UInt = 0x80
        static let newNS: UInt = 0x0002_0000
        static let newCgroup: UInt = 0x0200_0000
        static let newUTS: UInt = 0x0400_0000
        static let newIPC: UInt = 0x0800_0000
        static let newUser: UInt = 0x1000_0000
        static let newPID: UInt = 0x2000_0000
        static let newNet: UInt = 0x4000_0000
    }

    /// An absolute, normalised path (relative ones against the working directory).
    public static func absolutePath(_ path: String) -> String {
        var base = path
        if !path.hasPrefix("/") {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            base = (getcwd(&buffer, buffer.count).map { String(cString: $0) } ?? "") + "/" + path
        }
        var parts: [Substring] = []
        for part in base.split(separator: "/") {
            if part == "." { continue }
            if part == ".." { if !parts.isEmpty { parts.removeLast() }; continue }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }

    static func cloneFlag(_ type: NamespaceType) -> UInt {
        switch type {
        case .pid: CloneFlag.newPID
        case .network: CloneFlag.newNet
        case .mount: CloneFlag.newNS
        case .ipc: CloneFlag.newIPC
        case .uts: CloneFlag.newUTS
        case .user: CloneFlag.newUser
        case .cgroup: CloneFlag.newCgroup
        case .time: CloneFlag.newTime
        }
    }

    func writeIDMappings(pid: Int32, spec: Spec) throws(LinuxContainerError) {
        func render(_ maps: [IDMapping]?) -> String {
            (maps ?? []).map { "\($0.containerID) \($0.hostID) \($0.size)\n" }.joined()
        }
        do {
            try Files.writeString("/proc/\(pid)/uid_map", render(spec.linux?.uidMappings))
            try Files.writeString("/proc/\(pid)/gid_map", render(spec.linux?.gidMappings))
        } catch {
            throw LinuxContainerError(.invalidArgument, step: "write id mappings", error.message)
        }
    }

    static func timestamp() -> String {
        Date().formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    // MARK: - After create

    /// The state as the runtime-spec defines it.
    public func state(_ id: String) throws(LinuxContainerError) -> State {
        let record = try store.load(id)
        return State(id: record.id, status: status(record), pid: record.pid, bundle: record.bundle,
                     rootfs: record.rootfs, created: record.created, owner: record.owner, annotations: record.annotations)
    }

    public func isAlive(_ record: ContainerRecord) -> Bool {
        guard let start = ProcessInfoReader.startTime(pid: record.pid) else { return false }
        return start == record.pidStartTime
    }

    public func status(_ record: ContainerRecord) -> State.Status {
        guard isAlive(record) else { return .stopped }
        if Files.exists(store.fifoPath(record.id)) { return .created }
        return (try? cgroup(record))?.isFrozen == true ? .paused : .running
    }

    func cgroup(_ record: ContainerRecord) throws(LinuxContainerError) -> CgroupManager {
        do { return try CgroupManager(cgroupsPath: record.cgroupPath, containerID: record.id) } catch {
            throw LinuxContainerError(error.code, step: "cgroup", error.message)
        }
    }

    /// Every process of the container (its cgroup's members).
    public func processes(_ id: String) throws(LinuxContainerError) -> [Int32] {
        let record = try store.load(id)
        guard isAlive(record) else { return [] }
        return try cgroup(record).processes()
    }

    public func pause(_ id: String) throws(LinuxContainerError) {
        let record = try store.load(id)
        let s = status(record)
        guard s == .running || s == .created else {
            throw LinuxContainerError(.failedPrecondition, step: "", "cannot pause container \(id): it is \(s.rawValue)")
        }
        let cg = try cgroup(record)
        do throws(CgroupError) { try cg.freeze(true) } catch { throw LinuxContainerError(error.code, step: "pause \(id)", error.message) }
    }

    public func resume(_ id: String) throws(LinuxContainerError) {
        let record = try store.load(id)
        guard status(record) == .paused else {
            throw LinuxContainerError(.failedPrecondition, step: "", "cannot resume container \(id): it is not paused")
        }
        let cg = try cgroup(record)
        do throws(CgroupError) { try cg.freeze(false) } catch { throw LinuxContainerError(error.code, step: "resume \(id)", error.message) }
    }

    /// Changes the limits of a live container (runc update).
    public func update(_ id: String, resources: Resources) throws(LinuxContainerError) {
        let record = try store.load(id)
        guard isAlive(record) else { throw LinuxContainerError(.failedPrecondition, step: "", "container \(id) is not running") }
        let cg = try cgroup(record)
        if let unit = record.systemdUnit {
            // Also as unit properties, or systemd would put its own values back when it re-applies them.
            do throws(SystemdError) {
                try SystemdManager().setProperties(unit, UnitProperties.resources(resources, mode: cg.mode))
            } catch {
                throw LinuxContainerError(error.code, step: "update \(id)", error.message)
            }
        }
        do throws(CgroupError) { try cg.apply(resources) } catch { throw LinuxContainerError(error.code, step: "update \(id)", error.message) }
    }

    /// runc refuses stats of a stopped container; `ofStopped` reads what its cgroup still holds
    /// until deletion (the OOM-kill count after an exit, for the agent).
    public func stats(_ id: String, ofStopped: Bool = false) throws(LinuxContainerError) -> CgroupStats {
        let record = try store.load(id)
        guard ofStopped || isAlive(record) else { throw LinuxContainerError(.failedPrecondition, step: "", "container \(id) is not running") }
        return try cgroup(record).stats()
    }

    /// Lets the init process exec the user's program.
    public func start(_ id: String) throws(LinuxContainerError) {
        let record = try store.load(id)
        let status = status(record)
        guard status == .created else {
            throw LinuxContainerError(.failedPrecondition, step: "", "cannot start container \(id): it is \(status.rawValue), not created")
        }
        let fifo = store.fifoPath(id)
        // Non-blocking: a dead init must not hang us; then wait for its byte with a deadline.
        let fd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw LinuxContainerError(step: "open \(fifo)", String(cString: strerror(errno))) }
        let reader = FileDescriptor(adopting: fd)
        let deadline = Deadline.after(seconds: 10)
        var got = false
        while !got && !deadline.hasPassed {
            if let bytes = try? reader.read(upTo: 1, until: .after(seconds: 0.1)), !bytes.isEmpty { got = true; break }
            if !isAlive(record) { break }
        }
        reader.close()
        guard got else {
            throw LinuxContainerError(.unavailable, step: "", "cannot start container \(id): its init process did not respond")
        }
        unlink(fifo)
        // poststart failures are warnings by the spec: the container runs on.
        if record.poststart?.isEmpty == false {
            do {
                // The state as of the start just done (runc's too): the program may already have exited.
                let started = State(id: id, status: .running, pid: record.pid, bundle: record.bundle, rootfs: record.rootfs,
                                    created: record.created, owner: record.owner, annotations: record.annotations)
                try HookRunner.run(record.poststart, kind: "poststart", state: started)
            } catch {
                writeToStandardError("warning: \(error.message)\n")
            }
        }
    }

    public func kill(_ id: String, signal: Int32, all: Bool = false) throws(LinuxContainerError) {
        let record = try store.load(id)
        if all {
            let cg = try cgroup(record)
            guard isAlive(record) || !cg.processes().isEmpty else {
                throw LinuxContainerError(.notFound, step: "", "container \(id) is not running")
            }
            // Frozen tasks cannot act on signals; SIGKILL still lands once thawed.
            for pid in cg.processes() { Glibc.kill(pid, signal) }
            if cg.isFrozen { try? cg.freeze(false) }
            return
        }
        guard isAlive(record) else {
            throw LinuxContainerError(.notFound, step: "", "container \(id) is not running")
        }
        let pidfd = cocoon_pidfd_open(record.pid)
        guard pidfd >= 0 else { throw LinuxContainerError(.notFound, step: "", "container \(id) is not running") }
        defer { close(pidfd) }
        // Check again through the pidfd: the PID cannot be recycled under it now.
        guard isAlive(record) else { throw LinuxContainerError(.notFound, step: "", "container \(id) is not running") }
        guard cocoon_pidfd_send_signal(pidfd, signal) == 0 else {
            throw LinuxContainerError(step: "kill \(id)", String(cString: strerror(errno)))
        }
    }

    /// Removes a stopped container; `force` kills a running one first.
    public func delete(_ id: String, force: Bool) throws(LinuxContainerError) {
        let record: ContainerRecord
        do { record = try store.load(id) } catch {
            if force && error.code == .notFound { return }
            throw error
        }
        if isAlive(record) {
            guard force else {
                throw LinuxContainerError(.failedPrecondition, step: "",
                    "cannot delete container \(id): it is \(status(record).rawValue); stop it first or use --force")
            }
            try? kill(id, signal: SIGKILL, all: true)
            let deadline = Deadline.after(seconds: 10)
            while isAlive(record) && !deadline.hasPassed { sleep(seconds: 0.01) }
            if isAlive(record) {
                throw LinuxContainerError(.deadlineExceeded, step: "", "container \(id) did not die after SIGKILL within 10 s")
            }
        }
        // Anything left in the cgroup (a pid namespace dies with its init; a shared one does not).
        let cg = try cgroup(record)
        let stragglers = Deadline.after(seconds: 10)
        while !cg.processes().isEmpty && !stragglers.hasPassed {
            for pid in cg.processes() { Glibc.kill(pid, SIGKILL) }
            if cg.isFrozen { try? cg.freeze(false) }
            sleep(seconds: 0.01)
        }
        if let unit = record.systemdUnit {
            // The scope goes first: systemd removes the cgroups it made; cocoon removes the rest.
            do throws(SystemdError) { try SystemdManager().stopUnit(unit) } catch {
                throw LinuxContainerError(error.code, step: "delete \(id)", error.message)
            }
        }
        do throws(CgroupError) { try cg.destroy() } catch { throw LinuxContainerError(error.code, step: "delete \(id)", error.message) }
        // poststop: after the container is gone; failures are warnings by the spec.
        if record.poststop?.isEmpty == false {
            let stopped = State(id: id, status: .stopped, pid: 0, bundle: record.bundle, rootfs: record.rootfs,
                                created: record.created, owner: record.owner, annotations: record.annotations)
            do { try HookRunner.run(record.poststop, kind: "poststop", state: stopped) } catch {
                writeToStandardError("warning: \(error.message)\n")
            }
        }
        Files.removeTree(store.directory(id))
    }
}

/// Signal names and numbers as `kill` takes them: KILL, SIGKILL, 9.
public enum Signals {
    public static let names: [String: Int32] = [
        "HUP": SIGHUP, "INT": SIGINT, "QUIT": SIGQUIT, "ILL": SIGILL, "TRAP": SIGTRAP, "ABRT": SIGABRT, "IOT": SIGABRT,
        "BUS": SIGBUS, "FPE": SIGFPE, "KILL": SIGKILL, "USR1": SIGUSR1, "SEGV": SIGSEGV, "USR2": SIGUSR2,
        "PIPE": SIGPIPE, "ALRM": SIGALRM, "TERM": SIGTERM, "STKFLT": SIGSTKFLT, "CHLD": SIGCHLD, "CONT": SIGCONT,
        "STOP": SIGSTOP, "TSTP": SIGTSTP, "TTIN": SIGTTIN, "TTOU": SIGTTOU, "URG": SIGURG, "XCPU": SIGXCPU,
        "XFSZ": SIGXFSZ, "VTALRM": SIGVTALRM, "PROF": SIGPROF, "WINCH": SIGWINCH, "IO": SIGIO, "POLL": SIGIO,
        "PWR": SIGPWR, "SYS": SIGSYS,
    ]

    public static func parse(_ text: String) -> Int32? {
        if let n = Int32(text) { return (1...64).contains(n) ? n : nil }
        var name = text.uppercased()
        if name.hasPrefix("SIG") { name.removeFirst(3) }
        if let n = names[name] { return n }
        if name.hasPrefix("RTMIN") {
            let rest = name.dropFirst(5)
            if rest.isEmpty { return 34 }
            if rest.hasPrefix("+"), let k = Int32(rest.dropFirst()), 34 + k <= 64 { return 34 + k }
        }
        return nil
    }
}
