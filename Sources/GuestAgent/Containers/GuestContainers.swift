import AgentAPI
import Cgroups
import CSupport
import LinuxContainer
import Logging
import Mux
import OCI
import Processes
import StatusCodes
import SystemCalls
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// One process the agent started: a container's init (exec id "") or an exec, with its stdio and,
/// once it ended and its output was drained, its exit status. Kept until the container is removed.
final class GuestProcess: @unchecked Sendable {
    let execID: String
    let child: ChildProcess
    let stdio: ProcessStdio
    private let state = Condition()
    private var exitStatus: Int32?
    /// Set for the init once `start` let it run (an unstarted init is not "running").
    var started = false

    init(execID: String, child: ChildProcess, stdio: ProcessStdio) {
        self.execID = execID
        self.child = child
        self.stdio = stdio
    }

    var pid: Int32 { child.pid }
    var exited: Int32? { state.withLock { exitStatus } }

    /// A thread that waits for the exit, drains the output, then publishes the status.
    func watch(logger: Logger, onExit: @escaping @Sendable (GuestProcess) -> Void) throws(GuestAgentError) {
        do throws(SystemError) {
          try startDetachedThread {
            var termination: Termination?
            while termination == nil {
                termination = (try? self.child.wait(until: .after(seconds: 3600))) ?? nil
            }
            self.stdio.finish(grace: 2)
            self.state.withLock {
                self.exitStatus = termination!.exitStatus
                self.state.broadcast()
            }
            logger.debug("process exited", metadata: ["pid": "\(self.child.pid)", "exec": "\(self.execID)", "how": "\(termination!)"])
            onExit(self)
          }
        } catch {
            throw GuestAgentError(.resourceExhausted, "cannot watch process \(child.pid): \(error.message)")
        }
    }

    func waitExit(until deadline: Deadline?) -> Int32? {
        state.withLock {
            while exitStatus == nil {
                if !state.wait(until: deadline) { break }
            }
            return exitStatus
        }
    }
}

final class GuestContainer: @unchecked Sendable {
    let id: String
    let bundle: String
    let initProcess: GuestProcess
    var execs: [String: GuestProcess] = [:]

    init(id: String, bundle: String, initProcess: GuestProcess) {
        self.id = id
        self.bundle = bundle
        self.initProcess = initProcess
    }
}

/// The containers of this sandbox, run with the same library `cocoon` uses on bare metal.
/// Hooks and host paths in the spec are the host's business: the host runs hooks and shares
/// the files; what reaches the agent names guest paths only.
final class GuestContainers: @unchecked Sendable {
    let runtime: ContainerRuntime
    let bundleRoot: String
    let logger: Logger
    private let lock = NSLockLite()
    private var containers: [String: GuestContainer] = [:]
    /// Ids being created, so two creates of one id cannot race.
    private var creating: Set<String> = []

    static let maxContainers = 256
    static let maxExecsPerContainer = 1024

    init(stateRoot: String, initExecutable: String, initIsImmutable: Bool, logger: Logger) {
        runtime = ContainerRuntime(root: stateRoot + "/containers", initExecutable: initExecutable, shareSealedCopy: true,
                                   initIsImmutable: initIsImmutable)
        bundleRoot = stateRoot + "/bundles"
        self.logger = logger
    }

    // MARK: Lookup

    func container(_ id: String) throws(GuestAgentError) -> GuestContainer {
        lock.lock()
        defer { lock.unlock() }
        guard let c = containers[id] else { throw GuestAgentError(.notFound, "container '\(id)' does not exist") }
        return c
    }

    func process(_ id: String, _ execID: String) throws(GuestAgentError) -> GuestProcess {
        let c = try container(id)
        if execID.isEmpty { return c.initProcess }
        lock.lock()
        defer { lock.unlock() }
        guard let p = c.execs[execID] else { throw GuestAgentError(.notFound, "exec '\(execID)' does not exist in container '\(id)'") }
        return p
    }

    static func validateExecID(_ id: String) throws(GuestAgentError) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
        guard (1...128).contains(id.count), id.allSatisfy(allowed.contains), id.first != "." else {
            throw GuestAgentError(.invalidArgument, "exec_id '\(id)' is invalid: use 1 to 128 letters, digits, '_', '.' or '-'")
        }
    }

    // MARK: Create

    func create(_ r: Cocoon_Agent_V1_CreateContainerRequest, mux: Mux) throws(GuestAgentError) -> Int32 {
        do throws(LinuxContainerError) { try StateStore.validate(id: r.containerID) } catch {
            throw GuestAgentError(.invalidArgument, "container_id: \(error.message)")
        }
        lock.lock()
        if containers[r.containerID] != nil || creating.contains(r.containerID) {
            lock.unlock()
            throw GuestAgentError(.alreadyExists, "container '\(r.containerID)' already exists")
        }
        guard containers.count + creating.count < Self.maxContainers else {
            lock.unlock()
            throw GuestAgentError(.resourceExhausted, "at most \(Self.maxContainers) containers per sandbox")
        }
        creating.insert(r.containerID)
        lock.unlock()
        defer { lock.withLock { _ = creating.remove(r.containerID) } }

        let spec = try guestSpec(r)
        let bundle = "\(bundleRoot)/\(r.containerID)"
        do throws(SystemError) {
            try Files.makeDirectories(bundle, mode: 0o700)
            try Files.writeString(bundle + "/config.json", String(decoding: spec.encoded(), as: UTF8.self), mode: 0o600)
        } catch {
            Files.removeTree(bundle)
            throw GuestAgentError(error.code, "write the guest bundle \(bundle): \(error.message)")
        }
        let stdio: ProcessStdio
        do throws(GuestAgentError) {
            stdio = try ProcessStdio(channels: r.stdio, mux: mux, logger: logger)
        } catch {
            Files.removeTree(bundle)
            throw error
        }
        var options = ContainerRuntime.CreateOptions()
        options.stdio = stdio.childDescriptors.map(\.rawValue)
        options.consoleSocket = stdio.consoleChild?.rawValue
        let created: ContainerRuntime.Created
        do throws(LinuxContainerError) {
            created = try runtime.create(id: r.containerID, bundle: bundle, options: options)
        } catch {
            stdio.finish(grace: 0)
            Files.removeTree(bundle)
            throw GuestAgentError(error.code, error.message)
        }
        let process = GuestProcess(execID: "", child: created.process, stdio: stdio)
        do throws(GuestAgentError) {
            try stdio.started()
            try process.watch(logger: logger) { _ in }
        } catch {
            try? runtime.delete(r.containerID, force: true)
            stdio.finish(grace: 0)
            Files.removeTree(bundle)
            throw error
        }
        lock.withLock { containers[r.containerID] = GuestContainer(id: r.containerID, bundle: bundle, initProcess: process) }
        logger.info("container created", metadata: ["id": "\(r.containerID)", "pid": "\(process.pid)"])
        return process.pid
    }

    /// The spec as the guest runs it: the rootfs where the host said, the cgroup under /cocoon,
    /// no hooks (the host runs them), the VM's network namespace.
    func guestSpec(_ r: Cocoon_Agent_V1_CreateContainerRequest) throws(GuestAgentError) -> Spec {
        let file = "CreateContainerRequest.oci_spec_json"
        guard r.ociSpecJson.count <= Spec.maxConfigBytes else {
            throw GuestAgentError(.resourceExhausted, "\(file): larger than \(Spec.maxConfigBytes) bytes")
        }
        var spec: Spec
        do throws(OCIError) {
            spec = try Spec.decode(Array(r.ociSpecJson), file: file)
        } catch {
            throw GuestAgentError(error.code, error.message)
        }
        guard r.rootfsPath.hasPrefix("/"), !r.rootfsPath.split(separator: "/").contains("..") else {
            throw GuestAgentError(.invalidArgument, "rootfs_path must be an absolute guest path without '..', got '\(r.rootfsPath)'")
        }
        guard Files.exists(r.rootfsPath) else {
            throw GuestAgentError(.notFound, "rootfs_path \(r.rootfsPath) does not exist in the guest (is its storage mounted?)")
        }
        spec.root = Root(path: r.rootfsPath, readonly: spec.root?.readonly)
        spec.hooks = nil
        if spec.linux == nil { spec.linux = Linux() }
        spec.linux?.cgroupsPath = "/cocoon/\(r.containerID)"
        var namespaces: [OCI.Namespace] = []
        for (i, ns) in (spec.linux?.namespaces ?? []).enumerated() {
            guard let path = ns.path else { namespaces.append(ns); continue }
            // The host's network namespace is not the guest's: the container uses the VM's network.
            if ns.type == .network { continue }
            // A pod's containers share the sandbox container's ipc, uts and pid namespaces: CRI names
            // them /proc/<its pid>/ns/<type>, with the pid this agent reported. Only the namespaces of
            // containers this agent runs may be joined, never the agent's own.
            if let joined = podNamespacePath(path, type: ns.type) {
                namespaces.append(OCI.Namespace(type: ns.type, path: joined))
                continue
            }
            throw GuestAgentError(.invalidArgument,
                "\(file): linux.namespaces[\(i)].path: \(path) is not a namespace of a container in this VM; "
                + "a \(ns.type.rawValue) namespace can be joined by path only as /proc/<pid of a container in this pod>/ns/<type> (ipc, uts, pid)")
        }
        spec.linux?.namespaces = namespaces
        do throws(OCIError) {
            try spec.validate(file: file)
        } catch {
            throw GuestAgentError(error.code, error.message)
        }
        return spec
    }

    /// `path` when it is /proc/<init pid of a running container here>/ns/<the name for type>.
    func podNamespacePath(_ path: String, type: NamespaceType) -> String? {
        let names: [NamespaceType: String] = [.ipc: "ipc", .uts: "uts", .pid: "pid"]
        guard let name = names[type] else { return nil }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0].isEmpty, parts[1] == "proc", parts[3] == "ns", parts[4] == name,
              let pid = Int32(parts[2]), pid > 1 else { return nil }
        let owned = lock.withLock { containers.values.contains { $0.initProcess.pid == pid && $0.initProcess.exited == nil } }
        return owned ? "/proc/\(pid)/ns/\(name)" : nil
    }

    // MARK: Lifecycle

    func start(_ id: String) throws(GuestAgentError) {
        let c = try container(id)
        do throws(LinuxContainerError) {
            try runtime.start(id)
        } catch {
            throw GuestAgentError(error.code, error.message)
        }
        lock.withLock { c.initProcess.started = true }
    }

    func exec(_ r: Cocoon_Agent_V1_ExecProcessRequest, mux: Mux) throws(GuestAgentError) -> Int32 {
        try Self.validateExecID(r.execID)
        let c = try container(r.containerID)
        lock.lock()
        let exists = c.execs[r.execID] != nil
        let count = c.execs.count
        lock.unlock()
        guard !exists else { throw GuestAgentError(.alreadyExists, "exec '\(r.execID)' already exists in container '\(r.containerID)'") }
        guard count < Self.maxExecsPerContainer else {
            throw GuestAgentError(.resourceExhausted, "at most \(Self.maxExecsPerContainer) execs per container; remove finished ones")
        }
        let file = "ExecProcessRequest.process_json"
        let process: OCI.Process
        do {
            process = try JSONDecoder().decode(OCI.Process.self, from: Data(r.processJson))
        } catch {
            throw GuestAgentError(.invalidArgument, "\(file): not a valid OCI process: \(error)")
        }
        guard (process.terminal ?? false) == r.stdio.terminal else {
            throw GuestAgentError(.invalidArgument, "\(file): terminal must match stdio.terminal")
        }
        let stdio = try ProcessStdio(channels: r.stdio, mux: mux, logger: logger)
        var options = ContainerRuntime.ExecOptions()
        options.stdio = stdio.childDescriptors.map(\.rawValue)
        options.consoleSocket = stdio.consoleChild?.rawValue
        let child: ChildProcess
        do throws(LinuxContainerError) {
            child = try runtime.exec(r.containerID, process: process, options: options)
        } catch {
            stdio.finish(grace: 0)
            throw GuestAgentError(error.code, error.message)
        }
        let p = GuestProcess(execID: r.execID, child: child, stdio: stdio)
        p.started = true
        do throws(GuestAgentError) {
            try stdio.started()
            try p.watch(logger: logger) { _ in }
        } catch {
            child.kill()
            stdio.finish(grace: 0)
            throw error
        }
        lock.withLock { c.execs[r.execID] = p }
        return p.pid
    }

    func signal(_ r: Cocoon_Agent_V1_SignalProcessRequest) throws(GuestAgentError) {
        guard (1...64).contains(r.signal) else { throw GuestAgentError(.invalidArgument, "signal \(r.signal) is not between 1 and 64") }
        if r.all {
            _ = try container(r.containerID)
            do throws(LinuxContainerError) {
                try runtime.kill(r.containerID, signal: Int32(r.signal), all: true)
            } catch {
                throw GuestAgentError(error.code, error.message)
            }
            return
        }
        let p = try process(r.containerID, r.execID)
        guard p.exited == nil else {
            throw GuestAgentError(.notFound, "process '\(r.execID.isEmpty ? r.containerID : r.execID)' has exited")
        }
        p.child.signal(Int32(r.signal))
    }

    func wait(_ r: Cocoon_Agent_V1_ProcessRequest, until deadline: Deadline?) throws(GuestAgentError) -> Int32 {
        let p = try process(r.containerID, r.execID)
        guard let status = p.waitExit(until: deadline) else {
            throw GuestAgentError(.deadlineExceeded, "process is still running")
        }
        return status
    }

    func remove(_ r: Cocoon_Agent_V1_RemoveContainerRequest) throws(GuestAgentError) {
        let c = try container(r.containerID)
        if c.initProcess.exited == nil && !r.force && lock.withLock({ c.initProcess.started }) {
            throw GuestAgentError(.failedPrecondition, "container '\(r.containerID)' is running; stop it first or remove with force")
        }
        do throws(LinuxContainerError) {
            try runtime.delete(r.containerID, force: true)
        } catch {
            throw GuestAgentError(error.code, error.message)
        }
        // Its processes are gone with its cgroup; their watchers finish on their own.
        _ = c.initProcess.waitExit(until: .after(seconds: 10))
        Files.removeTree(c.bundle)
        lock.withLock { _ = containers.removeValue(forKey: r.containerID) }
        logger.info("container removed", metadata: ["id": "\(r.containerID)"])
    }

    /// Every container, at DestroySandbox or before a shutdown.
    func removeAll() {
        let ids = lock.withLock { Array(containers.keys) }
        for id in ids {
            var r = Cocoon_Agent_V1_RemoveContainerRequest()
            r.containerID = id
            r.force = true
            do throws(GuestAgentError) { try remove(r) } catch { logger.warning("remove \(id): \(error.message)") }
        }
    }

    func withRuntime<T>(_ id: String, _ body: (ContainerRuntime) throws(LinuxContainerError) -> T) throws(GuestAgentError) -> T {
        _ = try container(id)
        do throws(LinuxContainerError) {
            return try body(runtime)
        } catch {
            throw GuestAgentError(error.code, error.message)
        }
    }
}
