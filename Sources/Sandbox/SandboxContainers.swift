import AgentAPI
import Foundation
import Mux
import OCI
import Processes
import StatusCodes
import SystemCalls

/// Host descriptors a container process's stdio is relayed to and from.
public struct HostStdio: Sendable {
    /// nil: the process gets no stdin (/dev/null).
    public var stdin: Int32?
    public var stdout: Int32
    public var stderr: Int32
    public var terminal: Bool

    public init(stdin: Int32?, stdout: Int32, stderr: Int32, terminal: Bool) {
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.terminal = terminal
    }
}

/// Copies between host descriptors and one process's mux channels, one thread per direction.
public final class StdioRelay: @unchecked Sendable {
    let channels: ProcessChannels
    private let state = Condition()
    private var outputsRunning = 0
    private var inputRunning = false
    /// Written to by `stopInput`: wakes the stdin thread out of its poll.
    private let stopPipe: (read: FileDescriptor, write: FileDescriptor)

    public init(channels: ProcessChannels, host: HostStdio) throws(SandboxError) {
        self.channels = channels
        do throws(SystemError) {
            stopPipe = try FileDescriptor.pipe()
        } catch {
            throw SandboxError(.resourceExhausted, "cannot start the stdio relay: \(error.message)")
        }
        var outputs: [(MuxChannel, Int32)] = []
        if let c = channels.stdout { outputs.append((c, host.stdout)) }
        if let c = channels.stderr { outputs.append((c, host.stderr)) }
        outputsRunning = outputs.count
        do {
            for (channel, fd) in outputs {
                try startDetachedThread { self.copyOut(channel, to: fd) }
            }
            if let stdin = channels.stdin, let fd = host.stdin {
                inputRunning = true
                let stop = stopPipe.read.rawValue
                try startDetachedThread {
                    Self.copyIn(from: fd, to: stdin, stop: stop)
                    self.state.withLock {
                        self.inputRunning = false
                        self.state.broadcast()
                    }
                }
            }
        } catch {
            channels.reset(reason: "host relay failed")
            throw SandboxError(.resourceExhausted, "cannot start the stdio relay: \(error)")
        }
    }

    private func copyOut(_ channel: MuxChannel, to fd: Int32) {
        defer {
            state.withLock {
                outputsRunning -= 1
                state.broadcast()
            }
        }
        while true {
            guard let bytes = try? channel.readBytes(upTo: 64 * 1024, until: nil), !bytes.isEmpty else { return }
            var offset = 0
            while offset < bytes.count {
                let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                // The reader went away: keep draining the channel so the guest is not stalled.
                if n <= 0 { break }
                offset += n
            }
        }
    }

    /// Polls before each read, so a non-blocking FIFO that has not seen its writer yet (containerd's
    /// stdin) waits instead of reading a premature EOF; `stopInput` ends it early.
    private static func copyIn(from fd: Int32, to channel: MuxChannel, stop: Int32) {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: stop, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, 2, -1)
            if ready < 0 && errno == EINTR { continue }
            if ready < 0 || fds[1].revents != 0 { return }
            let n = read(fd, &buffer, buffer.count)
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            if n <= 0 { break }
            do throws(MuxError) {
                try channel.writeBytes(Array(buffer[0..<n]))
            } catch {
                return
            }
        }
        channel.closeWrite()
    }

    /// Stops copying stdin (the host descriptor may be closed afterwards); the process's stdin is
    /// left as it is. Waits briefly for the copying thread to let go of the descriptor.
    public func stopInput() {
        var one: UInt8 = 1
        _ = write(stopPipe.write.rawValue, &one, 1)
        state.withLock {
            let deadline = Deadline.after(seconds: 2)
            while inputRunning {
                if !state.wait(until: deadline) { break }
            }
        }
    }

    /// True once stdout and stderr reached their end (the agent closes them after the process
    /// exited and its output was drained).
    public func waitForOutput(until deadline: Deadline?) -> Bool {
        state.withLock {
            while outputsRunning > 0 {
                if !state.wait(until: deadline) { return false }
            }
            return true
        }
    }
}

/// What the host remembers of a container it created in the sandbox.
final class HostContainerRecord: @unchecked Sendable {
    let id: String
    let sharedDirectory: String
    var relays: [String: StdioRelay] = [:]

    init(id: String, sharedDirectory: String) {
        self.id = id
        self.sharedDirectory = sharedDirectory
    }
}

extension Sandbox {
    public static let requestTimeout = 60.0

    /// Validates the bundle, shares its rootfs and bind-mount sources with the guest, and creates
    /// the container there (its process waits for `startContainer`). Output starts flowing to
    /// `stdio` at once.
    @discardableResult
    public func createContainer(id: String, bundle: String, stdio: HostStdio) throws(SandboxError) -> Int32 {
        try createContainer(id: id, bundle: bundle, terminal: stdio.terminal) { () throws(SandboxError) -> OpenedStdio in
            let channels: ProcessChannels
            do throws(AgentAPIError) {
                channels = try agent.openStdio(containerID: id, stdin: stdio.stdin != nil, terminal: stdio.terminal)
            } catch {
                throw SandboxError(error.code, error.message)
            }
            let relay = try StdioRelay(channels: channels, host: stdio)
            return OpenedStdio(message: channels.message, relay: relay, reset: { channels.reset(reason: "create failed") })
        }
    }

    /// The same for a process whose stdio channels another process opened through the control
    /// socket (the per-sandbox daemon's clients): that process relays them, not this one.
    /// `sharesVMNetwork`: the container's own new network namespace on the host is the one the VM
    /// took over, so in the guest it joins the VM's network instead of getting an empty one.
    @discardableResult
    public func createContainer(id: String, bundle: String, channels: Cocoon_Agent_V1_StdioChannels,
                                sharesVMNetwork: Bool = false) throws(SandboxError) -> Int32 {
        try createContainer(id: id, bundle: bundle, terminal: channels.terminal, sharesVMNetwork: sharesVMNetwork) { () throws(SandboxError) -> OpenedStdio in
            OpenedStdio(message: channels, relay: nil, reset: {})
        }
    }

    struct OpenedStdio {
        let message: Cocoon_Agent_V1_StdioChannels
        let relay: StdioRelay?
        let reset: () -> Void
    }

    private func createContainer(id: String, bundle: String, terminal requested: Bool, sharesVMNetwork: Bool = false,
                                 openStdio: () throws(SandboxError) -> OpenedStdio) throws(SandboxError) -> Int32 {
        guard let shared else {
            throw SandboxError(.failedPrecondition, "sandbox \(self.id) was booted without a shared filesystem")
        }
        try Self.validateContainerID(id)
        guard record(id) == nil else { throw SandboxError(.alreadyExists, "container \(id) already exists in sandbox \(self.id)") }
        let bundle = URL(fileURLWithPath: bundle).standardizedFileURL.path
        var spec: Spec
        do throws(OCIError) {
            spec = try Spec.load(bundle: bundle)
        } catch {
            throw SandboxError(error.code, error.message)
        }
        guard let root = spec.root else {
            throw SandboxError(.invalidArgument, "\(bundle)/config.json: root: required to create a container")
        }
        guard spec.process != nil else {
            throw SandboxError(.invalidArgument, "\(bundle)/config.json: process: required to create a container")
        }
        let terminal = spec.process?.terminal == true
        guard terminal == requested else {
            throw SandboxError(.invalidArgument, terminal
                ? "\(bundle)/config.json: process.terminal is true but no terminal was requested"
                : "a terminal was requested but \(bundle)/config.json: process.terminal is not true")
        }
        // Hooks name host programs: the front end runs the host-side ones (the CLI: prestart,
        // createRuntime, poststart, poststop); the ones meant for the container's namespaces cannot
        // run in a guest that does not have those programs.
        if let hooks = spec.hooks {
            if hooks.createContainer?.isEmpty == false || hooks.startContainer?.isEmpty == false {
                logger.warning("\(bundle)/config.json: hooks.createContainer and hooks.startContainer are not run for VM containers")
            }
            spec.hooks = nil
        }
        if sharesVMNetwork { spec.linux?.namespaces?.removeAll { $0.type == .network } }
        let hostDir = "\(shared.hostPath)/\(id)"
        let guestDir = "\(SharedFiles.guestMountPoint)/\(id)"
        let rootfs = root.path.hasPrefix("/") ? root.path : bundle + "/" + root.path
        let entry = HostContainerRecord(id: id, sharedDirectory: hostDir)
        var ok = false
        defer {
            if !ok { SharedFiles.unmountAll(under: hostDir) }
        }
        // Writable even when root.readonly: the guest creates mount points in it before making the
        // container's view read-only, as runc does on the host.
        try SharedFiles.bind(rootfs, at: hostDir + "/rootfs", sharedRoot: shared.hostPath, readOnly: false)
        for (i, mount) in (spec.mounts ?? []).enumerated() {
            let options = mount.options ?? []
            guard options.contains("bind") || options.contains("rbind") || mount.type == "bind", let source = mount.source else { continue }
            let hostSource = source.hasPrefix("/") ? source : bundle + "/" + source
            do throws(SandboxError) {
                try SharedFiles.bind(hostSource, at: "\(hostDir)/mounts/\(i)", sharedRoot: shared.hostPath, readOnly: options.contains("ro"))
            } catch {
                throw SandboxError(error.code, "\(bundle)/config.json: mounts[\(i)].source: \(error.message)")
            }
            spec.mounts?[i].source = "\(guestDir)/mounts/\(i)"
        }

        let stdio = try openStdio()
        let pid: Int32
        do throws(AgentAPIError) {
            pid = try agent.createContainer(.with {
                $0.containerID = id
                $0.ociSpecJson = Data(spec.encoded(pretty: false))
                $0.rootfsPath = "\(guestDir)/rootfs"
                $0.stdio = stdio.message
            }, timeout: Self.requestTimeout)
        } catch {
            stdio.reset()
            throw SandboxError(error.code, error.message)
        }
        if let relay = stdio.relay { entry.relays[""] = relay }
        lock.withLock { containers[id] = entry }
        ok = true
        return pid
    }

    public func startContainer(_ id: String) throws(SandboxError) {
        do throws(AgentAPIError) {
            try agent.startContainer(id, timeout: Self.requestTimeout)
        } catch {
            throw SandboxError(error.code, error.message)
        }
    }

    /// Runs a process in a running container; its output flows to `stdio` at once.
    @discardableResult
    public func exec(containerID: String, execID: String, process: OCI.Process, stdio: HostStdio) throws(SandboxError) -> Int32 {
        guard let entry = record(containerID) else { throw SandboxError(.notFound, "container \(containerID) does not exist in sandbox \(id)") }
        guard (process.terminal ?? false) == stdio.terminal else {
            throw SandboxError(.invalidArgument, "process.terminal must match whether a terminal was requested")
        }
        let json: Data
        do { json = try JSONEncoder().encode(process) } catch {
            throw SandboxError(.invalidArgument, "the exec process does not encode: \(error)")
        }
        do throws(AgentAPIError) {
            let channels = try agent.openStdio(containerID: containerID, execID: execID, stdin: stdio.stdin != nil, terminal: stdio.terminal)
            let relay: StdioRelay
            do throws(SandboxError) { relay = try StdioRelay(channels: channels, host: stdio) } catch {
                throw AgentAPIError(error.code, error.message)
            }
            let pid: Int32
            do throws(AgentAPIError) {
                pid = try agent.execProcess(.with {
                    $0.containerID = containerID
                    $0.execID = execID
                    $0.processJson = json
                    $0.stdio = channels.message
                }, timeout: Self.requestTimeout)
            } catch {
                channels.reset(reason: "exec failed")
                throw error
            }
            lock.withLock { entry.relays[execID] = relay }
            return pid
        } catch {
            throw SandboxError(error.code, error.message)
        }
    }

    /// Waits for the process to exit and for its output to reach the host descriptors; returns
    /// the exit status (128 + signal when killed).
    public func wait(containerID: String, execID: String = "", timeout: Double? = nil) throws(SandboxError) -> Int32 {
        let status: Int32
        do throws(AgentAPIError) {
            status = try agent.wait(containerID, execID: execID, timeout: timeout)
        } catch {
            if let reason = failure {
                throw SandboxError(.unavailable, "sandbox \(id) failed while container \(containerID) was running: \(reason)",
                                   consoleTail: vm.consoleTail())
            }
            // A lost connection usually means QEMU is exiting: give it a moment to be reaped.
            var qemu: Termination? = vm.exited
            if qemu == nil && error.code == StatusCode.unavailable {
                qemu = vm.waitForExit(until: Deadline.after(seconds: 2))
            }
            if let t = qemu {
                throw SandboxError(.unavailable, "QEMU \(t) while container \(containerID) was running", consoleTail: vm.consoleTail())
            }
            if let t = virtiofsd?.exited {
                throw SandboxError(.unavailable, "virtiofsd \(t) while container \(containerID) was running")
            }
            throw SandboxError(error.code, error.message)
        }
        let relay = lock.withLock { record(unlocked: containerID)?.relays[execID] }
        // The agent closed the output channels before answering; the rest is buffered here.
        if relay?.waitForOutput(until: .after(seconds: 10)) == false {
            logger.warning("output of \(containerID) \(execID) did not finish within 10 s after the exit")
        }
        return status
    }

    public func signal(containerID: String, execID: String = "", signal: Int32, all: Bool = false) throws(SandboxError) {
        do throws(AgentAPIError) {
            try agent.signal(containerID, execID: execID, signal: signal, all: all, timeout: Self.requestTimeout)
        } catch {
            throw SandboxError(error.code, error.message)
        }
    }

    public func resizeTerminal(containerID: String, execID: String = "", rows: UInt32, columns: UInt32) throws(SandboxError) {
        do throws(AgentAPIError) {
            try agent.resizeTTY(containerID, execID: execID, rows: rows, columns: columns, timeout: Self.requestTimeout)
        } catch {
            throw SandboxError(error.code, error.message)
        }
    }

    /// Removes the container in the guest, then its shared files on the host.
    public func removeContainer(_ containerID: String, force: Bool) throws(SandboxError) {
        guard let entry = record(containerID) else { throw SandboxError(.notFound, "container \(containerID) does not exist in sandbox \(id)") }
        do throws(AgentAPIError) {
            try agent.removeContainer(containerID, force: force, timeout: Self.requestTimeout)
        } catch {
            throw SandboxError(error.code, error.message)
        }
        for relay in lock.withLock({ Array(entry.relays.values) }) { relay.stopInput() }
        SharedFiles.unmountAll(under: entry.sharedDirectory)
        // The directories stay until the sandbox is shut down: walking a tree the running guest can
        // rewrite (a directory swapped for a symlink mid-walk) could delete host files.
        lock.withLock { _ = containers.removeValue(forKey: containerID) }
    }

    /// Stops relaying stdin to a process that has exited and forgets its relay, so the caller may
    /// close the host descriptors. The container's own process is released by `removeContainer`.
    public func releaseProcess(containerID: String, execID: String) {
        let relay = lock.withLock { record(unlocked: containerID)?.relays.removeValue(forKey: execID) }
        relay?.stopInput()
    }

    func record(_ id: String) -> HostContainerRecord? { lock.withLock { containers[id] } }
    func record(unlocked id: String) -> HostContainerRecord? { containers[id] }

    public static func validateContainerID(_ id: String) throws(SandboxError) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
        guard (1...128).contains(id.count), id.allSatisfy(allowed.contains), id.first != ".", id.first != "-" else {
            throw SandboxError(.invalidArgument,
                "container id '\(id)' is invalid: use 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'")
        }
    }
}
