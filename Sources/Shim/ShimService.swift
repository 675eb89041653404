import AgentAPI
import Config
import ContainerdAPI
import Crypto
import Foundation
import LinuxContainer
import Logging
import OCI
import Sandbox
import StatusCodes
import SwiftProtobuf
import SystemCalls
import TTRPC

/// The pod's state in the shim daemon: its containers and processes, and the one VM they run in.
/// The VM boots with the first container (the pod's sandbox container under CRI) and stops when
/// the last one is deleted.
public final class ShimService: @unchecked Sendable {
    let namespace: String
    let group: String
    let config: Configuration
    let logger: Logger
    let events: EventForwarder
    /// Called once Shutdown found nothing left to serve (after the response is sent).
    let onIdleShutdown: @Sendable () -> Void
    let state = Condition()
    var containers: [String: ShimContainer] = [:]  // guarded by state
    var sandbox: Sandbox?  // guarded by state
    /// Serialises Create and Delete: booting and stopping the VM happen in them.
    let lifecycle = NSLock()

    public init(namespace: String, group: String, config: Configuration, eventsAddress: String?, logger: Logger,
                onIdleShutdown: @escaping @Sendable () -> Void) {
        self.namespace = namespace
        self.group = group
        self.config = config
        self.logger = logger
        self.events = EventForwarder(address: eventsAddress, namespace: namespace, logger: logger)
        self.onIdleShutdown = onIdleShutdown
    }

    /// The sandbox id for the pod: its group id, cut to 32 characters (CRI ids are 64 random hex
    /// digits, and unix socket paths under the run directory have 107 bytes), or a digest of it when
    /// it is not a valid sandbox id.
    var sandboxID: String {
        let short = String(group.prefix(32))
        if (try? Sandbox.validate(id: short)) != nil { return short }
        return "pod-" + SHA256.hash(data: Data(group.utf8)).prefix(16).map { String(format: "%02x", $0) }.joined()
    }

    // MARK: Create, Start, Delete

    func create(_ r: Containerd_Task_V2_CreateTaskRequest) throws(ShimError) -> Containerd_Task_V2_CreateTaskResponse {
        try Self.validate(id: r.id, field: "id")
        guard r.checkpoint.isEmpty else { throw ShimError(.unimplemented, "restoring a checkpoint is not supported by cocoon") }
        guard r.bundle.hasPrefix("/"), Files.exists(r.bundle + "/config.json") else {
            throw ShimError(.invalidArgument, "bundle: '\(r.bundle)' is not an absolute path to a bundle (a directory with config.json)")
        }
        lifecycle.lock()
        defer { lifecycle.unlock() }
        guard state.withLock({ containers[r.id] }) == nil else {
            throw ShimError(.alreadyExists, "container \(r.id) already exists in this shim")
        }
        let spec: OCI.Spec
        do throws(OCIError) { spec = try OCI.Spec.load(bundle: r.bundle) } catch {
            throw ShimError(error.code, error.message)
        }
        // Checked for every container, though only the first one's size the VM: a pod never runs
        // with VM settings it asked for and did not get, nor with ones it was not allowed.
        let overrides: VMOverrides
        do throws(ConfigError) {
            overrides = try VMOverrides.from(annotations: spec.annotations ?? [:], config: config.hypervisor,
                                             file: r.bundle + "/config.json")
        } catch {
            throw ShimError(error.code, error.message)
        }
        var mounted: String?
        var io: ProcessIO?
        var ok = false
        defer {
            if !ok {
                io?.close()
                if let mounted { RootfsMounts.unmount(mounted) }
            }
        }
        if !r.rootfs.isEmpty {
            let target = r.bundle + "/rootfs"
            if !Files.exists(target) {
                do throws(SystemError) { try Files.makeDirectories(target, mode: 0o711) } catch {
                    throw ShimError(.internal, "cannot create \(target): \(error.message)")
                }
            }
            try RootfsMounts.mount(r.rootfs, at: target)
            mounted = target
        }
        io = try ProcessIO.open(stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, terminal: r.terminal,
                                containerID: r.id, namespace: namespace)
        // prestart and createRuntime on the host, as Kata runs them: in the pod's network namespace (no host
        // process of the container lives there), with the shim's PID, before the VM takes the namespace over.
        let rootfsPath = spec.root.map { $0.path.hasPrefix("/") ? $0.path : r.bundle + "/" + $0.path } ?? r.bundle + "/rootfs"
        let networkNamespace = Sandbox.BootOptions.networkNamespace(of: spec)
        let created = Date().formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
        let hostState = { (status: OCI.State.Status) in
            OCI.State(id: r.id, status: status, pid: getpid(), bundle: r.bundle, rootfs: rootfsPath, created: created,
                      owner: "", annotations: spec.annotations)
        }
        do throws(LinuxContainerError) {
            try HookRunner.run(spec.hooks?.prestart, kind: "prestart", state: hostState(.creating), networkNamespace: networkNamespace)
            try HookRunner.run(spec.hooks?.createRuntime, kind: "createRuntime", state: hostState(.creating),
                               networkNamespace: networkNamespace)
        } catch {
            throw ShimError(error.code, error.message)
        }
        let sandbox = try podSandbox(for: spec, overrides: overrides)
        let pid: Int32
        do throws(SandboxError) {
            pid = try sandbox.createContainer(id: r.id, bundle: r.bundle, stdio: io!.host)
        } catch {
            stopSandboxIfUnused()
            throw ShimError(error.code, error.description)
        }
        let process = ShimProcess(containerID: r.id, execID: "", stdin: r.stdin, stdout: r.stdout, stderr: r.stderr,
                                  terminal: r.terminal, spec: nil)
        process.pid = pid
        process.io = io
        let container = ShimContainer(id: r.id, bundle: r.bundle, mountedRootfs: mounted, initProcess: process)
        container.hooks = spec.hooks
        container.rootfs = rootfsPath
        container.networkNamespace = networkNamespace
        container.created = created
        container.annotations = spec.annotations
        state.withLock { containers[r.id] = container }
        ok = true
        events.publish(EventTopic.taskCreate, Containerd_Events_TaskCreate.with {
            $0.containerID = r.id
            $0.bundle = r.bundle
            $0.rootfs = r.rootfs
            $0.io = .with {
                $0.stdin = r.stdin
                $0.stdout = r.stdout
                $0.stderr = r.stderr
                $0.terminal = r.terminal
            }
            $0.checkpoint = r.checkpoint
            $0.pid = UInt32(bitPattern: pid)
        })
        watch(process, in: sandbox)
        logger.info("container created", metadata: ["id": "\(r.id)", "sandbox": "\(sandbox.id)"])
        return .with { $0.pid = UInt32(bitPattern: pid) }
    }

    /// The pod's VM, booted now if this is its first container (sized from this container's limits).
    private func podSandbox(for spec: OCI.Spec, overrides: VMOverrides) throws(ShimError) -> Sandbox {
        if let existing = state.withLock({ sandbox }) {
            if let reason = existing.failure {
                throw ShimError(.unavailable, "the pod's VM (sandbox \(existing.id)) failed: \(reason)")
            }
            return existing
        }
        var options = Sandbox.BootOptions()
        options.shareFilesystem = true
        // Without a hostname in the spec the guest would be "(none)"; the pod's id is what docker would use.
        options.hostname = spec.hostname ?? String(group.prefix(12))
        let size = VMSizing.size(for: spec.linux?.resources, config: config.hypervisor)
        options.memoryMiB = overrides.memoryMiB ?? size.memoryMiB
        options.vcpus = overrides.vcpus ?? size.vcpus
        options.extraKernelParameters = overrides.kernelParams
        // The pod's first container (CRI's sandbox container) names the namespace CNI set up.
        options.networkNamespace = Sandbox.BootOptions.networkNamespace(of: spec)
        let booted: Sandbox
        do throws(SandboxError) {
            booted = try Sandbox.boot(id: sandboxID, configuration: config, options: options, logger: logger)
        } catch {
            throw ShimError(error.code, "cannot boot the pod's VM: \(error.description)")
        }
        booted.startMonitor()
        state.withLock { sandbox = booted }
        return booted
    }

    /// Stops the VM when no container is left in it. Called with `lifecycle` held.
    private func stopSandboxIfUnused() {
        let idle = state.withLock { () -> Sandbox? in
            guard containers.isEmpty, let s = sandbox else { return nil }
            sandbox = nil
            return s
        }
        if let idle {
            idle.shutdown()
            logger.info("pod VM stopped", metadata: ["sandbox": "\(idle.id)"])
        }
    }

    func start(_ r: Containerd_Task_V2_StartRequest) throws(ShimError) -> Containerd_Task_V2_StartResponse {
        let (container, process, sandbox) = try lookup(r.id, r.execID)
        process.startLock.lock()
        defer { process.startLock.unlock() }
        guard state.withLock({ process.status }) == .created else {
            throw ShimError(.failedPrecondition, "process \(r.execID.isEmpty ? r.id : r.execID) is not in the created state")
        }
        if r.execID.isEmpty {
            do throws(SandboxError) { try sandbox.startContainer(r.id) } catch {
                throw ShimError(error.code, error.description)
            }
            state.withLock { if process.status == .created { process.status = .running } }
            runHostHooks(container.hooks?.poststart, kind: "poststart", container, status: .running)
            events.publish(EventTopic.taskStart, Containerd_Events_TaskStart.with {
                $0.containerID = r.id
                $0.pid = UInt32(bitPattern: process.pid)
            })
            return .with { $0.pid = UInt32(bitPattern: process.pid) }
        }
        guard state.withLock({ container.initProcess.status }) == .running else {
            throw ShimError(.failedPrecondition, "container \(r.id) is not running")
        }
        let io = try ProcessIO.open(stdin: process.stdin, stdout: process.stdout, stderr: process.stderr,
                                    terminal: process.terminal, containerID: r.id, namespace: namespace)
        let pid: Int32
        do throws(SandboxError) {
            pid = try sandbox.exec(containerID: r.id, execID: r.execID, process: process.spec ?? OCI.Process(),
                                   stdio: io.host)
        } catch {
            io.close()
            throw ShimError(error.code, error.description)
        }
        state.withLock {
            process.pid = pid
            process.io = io
            process.status = .running
        }
        events.publish(EventTopic.taskExecStarted, Containerd_Events_TaskExecStarted.with {
            $0.containerID = r.id
            $0.execID = r.execID
            $0.pid = UInt32(bitPattern: pid)
        })
        watch(process, in: sandbox)
        return .with { $0.pid = UInt32(bitPattern: pid) }
    }

    /// Waits on its own thread for the process to exit, then closes its host stdio (its output is
    /// drained by then) and reports the exit: state first, then the event.
    private func watch(_ process: ShimProcess, in sandbox: Sandbox) {
        let body: @Sendable () -> Void = { [self] in
            var status: Int32
            do throws(SandboxError) {
                status = try sandbox.wait(containerID: process.containerID, execID: process.execID)
            } catch {
                logger.error("process ended without an exit status", metadata: [
                    "id": "\(process.containerID)", "exec": "\(process.execID)", "error": "\(error.description)"])
                status = 255
            }
            sandbox.releaseProcess(containerID: process.containerID, execID: process.execID)
            reportOOM(process.containerID, in: sandbox)
            process.startLock.lock()
            defer { process.startLock.unlock() }
            let io = state.withLock { () -> ProcessIO? in
                defer { process.io = nil }
                return process.io
            }
            io?.close()
            let now = Date()
            state.withLock {
                process.status = .stopped
                process.exitStatus = UInt32(bitPattern: status)
                process.exitedAt = now
                state.broadcast()
            }
            events.publish(EventTopic.taskExit, Containerd_Events_TaskExit.with {
                $0.containerID = process.containerID
                $0.id = process.execID.isEmpty ? process.containerID : process.execID
                $0.pid = UInt32(bitPattern: process.pid)
                $0.exitStatus = UInt32(bitPattern: status)
                $0.exitedAt = Google_Protobuf_Timestamp(date: now)
            })
        }
        do throws(SystemError) { try startDetachedThread(body) } catch {
            logger.error("cannot watch process \(process.containerID) \(process.execID): \(error.message)")
        }
    }

    /// The guest kernel counts OOM kills per cgroup; a count that grew since the last look means the
    /// OOM killer struck in this container, which containerd (and the kubelet's OOMKilled) learns
    /// from a TaskOOM event ahead of the exit.
    private func reportOOM(_ containerID: String, in sandbox: Sandbox) {
        guard let kills = try? sandbox.agent.stats(containerID, timeout: 10).oomKills,
              let container = state.withLock({ containers[containerID] }) else { return }
        let grew = state.withLock { () -> Bool in
            defer { container.oomKills = max(container.oomKills, kills) }
            return kills > container.oomKills
        }
        if grew {
            events.publish(EventTopic.taskOOM, Containerd_Events_TaskOOM.with { $0.containerID = containerID })
        }
    }

    func delete(_ r: Containerd_Task_V2_DeleteRequest) throws(ShimError) -> Containerd_Task_V2_DeleteResponse {
        let (container, process, sandbox) = try lookup(r.id, r.execID)
        if !r.execID.isEmpty {
            let status = state.withLock { process.status }
            guard status != .running else {
                throw ShimError(.failedPrecondition, "exec \(r.execID) in \(r.id) is running: kill it before deleting it")
            }
            state.withLock { _ = container.execs.removeValue(forKey: r.execID) }
            return .with {
                $0.pid = UInt32(bitPattern: process.pid)
                $0.exitStatus = process.exitStatus
                $0.exitedAt = process.exitTimestamp
            }
        }
        lifecycle.lock()
        defer { lifecycle.unlock() }
        switch state.withLock({ process.status }) {
        case .running, .paused, .pausing:
            throw ShimError(.failedPrecondition, "container \(r.id) is running: kill it before deleting it")
        case .created:
            // Never started: its init stage is waiting in the guest. End it and collect the status.
            try? sandbox.signal(containerID: r.id, signal: SIGKILL)
            _ = waitStopped(process, until: .after(seconds: 10))
        default:
            break
        }
        do throws(SandboxError) { try sandbox.removeContainer(r.id, force: true) } catch {
            logger.warning("removing \(r.id) in the guest: \(error.message)")
        }
        let io = state.withLock { () -> ProcessIO? in
            defer { process.io = nil }
            return process.io
        }
        io?.close()
        if let rootfs = container.mountedRootfs { RootfsMounts.unmount(rootfs) }
        runHostHooks(container.hooks?.poststop, kind: "poststop", container, status: .stopped)
        state.withLock { _ = containers.removeValue(forKey: r.id) }
        events.publish(EventTopic.taskDelete, Containerd_Events_TaskDelete.with {
            $0.containerID = r.id
            $0.pid = UInt32(bitPattern: process.pid)
            $0.exitStatus = process.exitStatus
            $0.exitedAt = process.exitTimestamp
        })
        stopSandboxIfUnused()
        logger.info("container deleted", metadata: ["id": "\(r.id)"])
        return .with {
            $0.pid = UInt32(bitPattern: process.pid)
            $0.exitStatus = process.exitStatus
            $0.exitedAt = process.exitTimestamp
        }
    }

    /// poststart and poststop: their failures are logged, not returned (runtime-spec).
    private func runHostHooks(_ hooks: [Hook]?, kind: String, _ container: ShimContainer, status: OCI.State.Status) {
        guard let hooks, !hooks.isEmpty else { return }
        let state = OCI.State(id: container.id, status: status, pid: getpid(), bundle: container.bundle, rootfs: container.rootfs,
                              created: container.created, owner: "", annotations: container.annotations)
        do throws(LinuxContainerError) {
            try HookRunner.run(hooks, kind: kind, state: state, networkNamespace: container.networkNamespace)
        } catch {
            logger.warning("container \(container.id): \(error.message)")
        }
    }

    // MARK: Processes

    func exec(_ r: Containerd_Task_V2_ExecProcessRequest) throws(ShimError) {
        try Self.validate(id: r.execID, field: "exec_id")
        let (container, _, _) = try lookup(r.id, "")
        guard TypeURL.name(of: r.spec) == "Process" || r.spec.typeURL == TypeURL.ociProcess else {
            throw ShimError(.invalidArgument, "spec: expected an OCI process (\(TypeURL.ociProcess)), got '\(r.spec.typeURL)'")
        }
        let process: OCI.Process
        do { process = try JSONDecoder().decode(OCI.Process.self, from: r.spec.value) } catch {
            throw ShimError(.invalidArgument, "spec: the OCI process does not decode: \(error)")
        }
        guard process.args?.isEmpty == false else { throw ShimError(.invalidArgument, "spec.args: at least one argument is required") }
        guard (process.terminal ?? false) == r.terminal else {
            throw ShimError(.invalidArgument, "terminal: \(r.terminal) but spec.terminal is \(process.terminal ?? false)")
        }
        try state.withLock { () throws(ShimError) in
            guard container.initProcess.status == .running else {
                throw ShimError(.failedPrecondition, "container \(r.id) is not running")
            }
            guard container.execs[r.execID] == nil else {
                throw ShimError(.alreadyExists, "exec \(r.execID) already exists in container \(r.id)")
            }
            container.execs[r.execID] = ShimProcess(containerID: r.id, execID: r.execID, stdin: r.stdin, stdout: r.stdout,
                                                    stderr: r.stderr, terminal: r.terminal, spec: process)
        }
        events.publish(EventTopic.taskExecAdded, Containerd_Events_TaskExecAdded.with {
            $0.containerID = r.id
            $0.execID = r.execID
        })
    }

    func kill(_ r: Containerd_Task_V2_KillRequest) throws(ShimError) {
        let (_, process, sandbox) = try lookup(r.id, r.execID)
        guard r.signal > 0, r.signal < 65 else { throw ShimError(.invalidArgument, "signal: \(r.signal) is not a signal number (1-64)") }
        if state.withLock({ process.status }) == .stopped && !r.all {
            throw ShimError(.notFound, "process \(r.execID.isEmpty ? r.id : r.execID) already finished")
        }
        do throws(SandboxError) {
            try sandbox.signal(containerID: r.id, execID: r.execID, signal: Int32(r.signal), all: r.all)
        } catch {
            if state.withLock({ process.status }) == .stopped { return }
            throw ShimError(error.code, error.message)
        }
    }

    func wait(_ r: Containerd_Task_V2_WaitRequest, until deadline: Deadline?) throws(ShimError) -> Containerd_Task_V2_WaitResponse {
        let (_, process, _) = try lookup(r.id, r.execID)
        guard waitStopped(process, until: deadline) else {
            throw ShimError(.deadlineExceeded, "process \(r.execID.isEmpty ? r.id : r.execID) is still running")
        }
        return .with {
            $0.exitStatus = process.exitStatus
            $0.exitedAt = process.exitTimestamp
        }
    }

    private func waitStopped(_ process: ShimProcess, until deadline: Deadline?) -> Bool {
        state.withLock {
            while process.status != .stopped {
                if !state.wait(until: deadline) { return false }
            }
            return true
        }
    }

    func state(_ r: Containerd_Task_V2_StateRequest) throws(ShimError) -> Containerd_Task_V2_StateResponse {
        let (container, process, _) = try lookup(r.id, r.execID)
        return state.withLock {
            .with {
                $0.id = r.execID.isEmpty ? r.id : r.execID
                $0.execID = r.execID
                $0.bundle = container.bundle
                $0.pid = UInt32(bitPattern: process.pid)
                $0.status = r.execID.isEmpty && container.paused && process.status == .running ? .paused : process.status
                $0.stdin = process.stdin
                $0.stdout = process.stdout
                $0.stderr = process.stderr
                $0.terminal = process.terminal
                $0.exitStatus = process.exitStatus
                $0.exitedAt = process.exitTimestamp
            }
        }
    }

    func resizePty(_ r: Containerd_Task_V2_ResizePtyRequest) throws(ShimError) {
        let (_, process, sandbox) = try lookup(r.id, r.execID)
        guard process.terminal else { throw ShimError(.failedPrecondition, "process \(r.execID.isEmpty ? r.id : r.execID) has no terminal") }
        do throws(SandboxError) {
            try sandbox.resizeTerminal(containerID: r.id, execID: r.execID, rows: r.height, columns: r.width)
        } catch {
            throw ShimError(error.code, error.message)
        }
    }

    func closeIO(_ r: Containerd_Task_V2_CloseIORequest) throws(ShimError) {
        let (_, _, sandbox) = try lookup(r.id, r.execID)
        guard r.stdin else { return }
        do throws(AgentAPIError) {
            try sandbox.agent.closeStdin(r.id, execID: r.execID, timeout: Sandbox.requestTimeout)
        } catch {
            throw ShimError(error.code, error.message)
        }
    }

    // MARK: Container-wide

    func pids(_ r: Containerd_Task_V2_PidsRequest) throws(ShimError) -> Containerd_Task_V2_PidsResponse {
        let (_, _, sandbox) = try lookup(r.id, "")
        do throws(AgentAPIError) {
            let pids = try sandbox.agent.listProcesses(r.id, timeout: Sandbox.requestTimeout)
            return .with { $0.processes = pids.map { pid in .with { $0.pid = UInt32(bitPattern: pid) } } }
        } catch {
            throw ShimError(error.code, error.message)
        }
    }

    func pause(_ id: String, _ pausing: Bool) throws(ShimError) {
        let (container, process, sandbox) = try lookup(id, "")
        guard state.withLock({ process.status }) == .running else { throw ShimError(.failedPrecondition, "container \(id) is not running") }
        do throws(AgentAPIError) {
            if pausing {
                try sandbox.agent.pause(id, timeout: Sandbox.requestTimeout)
            } else {
                try sandbox.agent.resume(id, timeout: Sandbox.requestTimeout)
            }
        } catch {
            throw ShimError(error.code, error.message)
        }
        state.withLock { container.paused = pausing }
        if pausing {
            events.publish(EventTopic.taskPaused, Containerd_Events_TaskPaused.with { $0.containerID = id })
        } else {
            events.publish(EventTopic.taskResumed, Containerd_Events_TaskResumed.with { $0.containerID = id })
        }
    }

    func stats(_ r: Containerd_Task_V2_StatsRequest) throws(ShimError) -> Containerd_Task_V2_StatsResponse {
        let (_, _, sandbox) = try lookup(r.id, "")
        let s: Cocoon_Agent_V1_StatsResponse
        do throws(AgentAPIError) { s = try sandbox.agent.stats(r.id, timeout: Sandbox.requestTimeout) } catch {
            throw ShimError(error.code, error.message)
        }
        // The guest is cgroup v2 whatever the host runs, so this is always the v2 message.
        let metrics = Io_Containerd_Cgroups_V2_Metrics.with {
            $0.pids = .with {
                $0.current = s.pidsCurrent
                $0.limit = s.pidsLimit
            }
            $0.cpu = .with { $0.usageUsec = s.cpuUsageNanoseconds / 1000 }
            $0.memory = .with {
                $0.usage = s.memoryUsageBytes
                $0.usageLimit = s.memoryLimitBytes
            }
            $0.memoryEvents = .with { $0.oomKill = s.oomKills }
        }
        do {
            let packed = try TypeURL.pack(metrics)
            return .with { $0.stats = packed }
        } catch {
            throw ShimError(.internal, "the metrics of \(r.id) do not encode: \(error)")
        }
    }

    func update(_ r: Containerd_Task_V2_UpdateTaskRequest) throws(ShimError) {
        let (_, _, sandbox) = try lookup(r.id, "")
        guard r.hasResources else { return }
        guard r.resources.typeURL == TypeURL.ociLinuxResources || TypeURL.name(of: r.resources) == "LinuxResources" else {
            throw ShimError(.invalidArgument, "resources: expected OCI LinuxResources (\(TypeURL.ociLinuxResources)), got '\(r.resources.typeURL)'")
        }
        do { _ = try JSONDecoder().decode(OCI.Resources.self, from: r.resources.value) } catch {
            throw ShimError(.invalidArgument, "resources: the OCI LinuxResources do not decode: \(error)")
        }
        do throws(AgentAPIError) {
            try sandbox.agent.update(r.id, resourcesJSON: [UInt8](r.resources.value), timeout: Sandbox.requestTimeout)
        } catch {
            throw ShimError(error.code, error.message)
        }
    }

    func connect(_ r: Containerd_Task_V2_ConnectRequest) -> Containerd_Task_V2_ConnectResponse {
        let pid = state.withLock { containers[r.id]?.initProcess.pid ?? 0 }
        return .with {
            $0.shimPid = UInt32(getpid())
            $0.taskPid = UInt32(bitPattern: pid)
            $0.version = "cocoon \(CocoonVersion.string)"
        }
    }

    /// containerd asks after every task it deletes; the shim exits only when no container is left.
    func shutdown(_ r: Containerd_Task_V2_ShutdownRequest, context: TTRPCContext) {
        let idle = state.withLock { containers.isEmpty }
        guard idle else { return }
        context.afterResponse.add { [self] in
            finish()
            onIdleShutdown()
        }
    }

    /// Delivers the last events and stops the VM, if one is still up.
    public func finish() {
        lifecycle.lock()
        let last = state.withLock { () -> Sandbox? in
            defer { sandbox = nil }
            return sandbox
        }
        lifecycle.unlock()
        last?.shutdown()
        events.flush(until: .after(seconds: 5))
    }

    // MARK: Helpers

    private func lookup(_ id: String, _ execID: String) throws(ShimError) -> (ShimContainer, ShimProcess, Sandbox) {
        try state.withLock { () throws(ShimError) -> (ShimContainer, ShimProcess, Sandbox) in
            guard let c = containers[id] else { throw ShimError(.notFound, "container \(id) does not exist in this shim") }
            guard let s = sandbox else { throw ShimError(.notFound, "container \(id) has no VM") }
            if execID.isEmpty { return (c, c.initProcess, s) }
            guard let p = c.execs[execID] else { throw ShimError(.notFound, "exec \(execID) does not exist in container \(id)") }
            return (c, p, s)
        }
    }

    static func validate(id: String, field: String) throws(ShimError) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
        guard (1...128).contains(id.count), id.allSatisfy(allowed.contains), id.first != ".", id.first != "-" else {
            throw ShimError(.invalidArgument,
                "\(field): '\(id)' is invalid: use 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'")
        }
    }
}
