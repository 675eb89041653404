import AgentAPI
import Foundation
import Logging
import Mux
import Sandbox
import StatusCodes
import SystemCalls
import TTRPC

/// The daemon's API (Protos/daemon/daemon.proto) over the sandbox it holds. It is the one place
/// that knows the status of the sandbox's containers: a waiter per container records its exit, so
/// `state` after the stand-in is gone still tells stopped from running.
public final class DaemonService: @unchecked Sendable {
    public static let channelName = "cocoon-daemon"
    public static let serviceName = "cocoon.daemon.v1.Daemon"

    enum Status: String { case created, running, paused, stopped }

    struct Entry {
        var status: Status
        var guestPID: Int32
        var exitStatus: Int32?
        var reason = ""
    }

    let sandbox: Sandbox
    let logger: Logger
    private let state = Condition()
    private var containers: [String: Entry] = [:]  // guarded by state
    private var everCreated = false  // guarded by state
    private var finished = false  // guarded by state

    public init(sandbox: Sandbox, logger: Logger) {
        self.sandbox = sandbox
        self.logger = logger
    }

    /// True once the last container was deleted: the daemon stops the VM and exits.
    public var isFinished: Bool { state.withLock { finished } }

    /// Serves one client's daemon channel until it closes.
    public func serve(_ channel: MuxChannel) {
        TTRPCServer(services: [ttrpcService()], logger: logger).serve(channel)
        channel.reset(reason: "daemon connection closed")
    }

    func ttrpcService() -> TTRPCService {
        var s = TTRPCService(Self.serviceName)
        s.unary("CreateContainer") { [self] (_, r: Cocoon_Daemon_V1_CreateContainerRequest) in try create(r) }
        s.unary("StartContainer") { [self] (_, r: Cocoon_Daemon_V1_ContainerRequest) in try start(r.containerID) }
        s.unary("ContainerState") { [self] (_, r: Cocoon_Daemon_V1_ContainerRequest) in try status(r.containerID) }
        s.unary("PauseContainer") { [self] (_, r: Cocoon_Daemon_V1_ContainerRequest) in try pause(r.containerID, freeze: true) }
        s.unary("ResumeContainer") { [self] (_, r: Cocoon_Daemon_V1_ContainerRequest) in try pause(r.containerID, freeze: false) }
        s.unary("DeleteContainer") { [self] (context, r: Cocoon_Daemon_V1_DeleteContainerRequest) in
            let response = try delete(r)
            if response.sandboxStopping {
                // After the answer is on the wire: the client then waits for this process to end.
                context.afterResponse.add { [self] in state.withLock { finished = true; state.broadcast() } }
            }
            return response
        }
        return s
    }

    private func entry(_ id: String) throws(SandboxDaemonError) -> Entry {
        guard let e = state.withLock({ containers[id] }) else {
            throw SandboxDaemonError(.notFound, "container \(id) does not exist in sandbox \(sandbox.id)")
        }
        return e
    }

    func create(_ r: Cocoon_Daemon_V1_CreateContainerRequest) throws(SandboxDaemonError) -> Cocoon_Daemon_V1_CreateContainerResponse {
        guard r.bundle.hasPrefix("/") else {
            throw SandboxDaemonError(.invalidArgument, "CreateContainerRequest.bundle: '\(r.bundle)' is not an absolute path")
        }
        guard state.withLock({ containers[r.containerID] }) == nil else {
            throw SandboxDaemonError(.alreadyExists, "container \(r.containerID) already exists in sandbox \(sandbox.id)")
        }
        let channels = Cocoon_Agent_V1_StdioChannels.with {
            $0.stdin = r.stdinChannel
            $0.stdout = r.stdoutChannel
            $0.stderr = r.stderrChannel
            $0.terminal = r.terminal
        }
        let pid: Int32
        do throws(SandboxError) {
            // The VM carries the network namespace the stand-in made: its containers share the VM's.
            pid = try sandbox.createContainer(id: r.containerID, bundle: r.bundle, channels: channels,
                                              sharesVMNetwork: sandbox.network != nil)
        } catch {
            throw SandboxDaemonError(error, context: "")
        }
        state.withLock {
            containers[r.containerID] = Entry(status: .created, guestPID: pid)
            everCreated = true
        }
        let id = r.containerID
        do {
            try startDetachedThread { [self] in watch(id) }
        } catch {
            logger.error("cannot watch container \(id): \(error)")
        }
        return .with { $0.guestPid = pid }
    }

    /// Records the exit of the container's process (or the sandbox failure that ended it).
    private func watch(_ id: String) {
        var status: Int32 = 255
        var reason = ""
        do throws(SandboxError) {
            status = try sandbox.wait(containerID: id)
        } catch {
            reason = error.message
        }
        state.withLock {
            guard var e = containers[id] else { return }
            e.status = .stopped
            e.exitStatus = status
            e.reason = reason
            containers[id] = e
            state.broadcast()
        }
        logger.info("container exited", metadata: ["id": "\(id)", "status": "\(status)", "reason": "\(reason)"])
    }

    func start(_ id: String) throws(SandboxDaemonError) -> Cocoon_Daemon_V1_Empty {
        let e = try entry(id)
        guard e.status == .created else {
            throw SandboxDaemonError(.failedPrecondition, "cannot start container \(id): it is \(e.status.rawValue), not created")
        }
        do throws(SandboxError) { try sandbox.startContainer(id) } catch {
            throw SandboxDaemonError(error, context: "start \(id)")
        }
        state.withLock {
            if containers[id]?.status == .created { containers[id]?.status = .running }
        }
        return Cocoon_Daemon_V1_Empty()
    }

    func status(_ id: String) throws(SandboxDaemonError) -> Cocoon_Daemon_V1_ContainerStateResponse {
        let e = try entry(id)
        return .with {
            $0.status = e.status.rawValue
            $0.guestPid = e.guestPID
            $0.exited = e.exitStatus != nil
            $0.exitStatus = e.exitStatus ?? 0
            $0.reason = e.reason
        }
    }

    func pause(_ id: String, freeze: Bool) throws(SandboxDaemonError) -> Cocoon_Daemon_V1_Empty {
        let e = try entry(id)
        if freeze {
            guard e.status == .running || e.status == .created else {
                throw SandboxDaemonError(.failedPrecondition, "cannot pause container \(id): it is \(e.status.rawValue)")
            }
        } else {
            guard e.status == .paused else {
                throw SandboxDaemonError(.failedPrecondition, "cannot resume container \(id): it is not paused")
            }
        }
        do throws(AgentAPIError) {
            if freeze {
                try sandbox.agent.pause(id, timeout: Sandbox.requestTimeout)
            } else {
                try sandbox.agent.resume(id, timeout: Sandbox.requestTimeout)
            }
        } catch {
            throw SandboxDaemonError(error, context: "\(freeze ? "pause" : "resume") \(id)")
        }
        state.withLock {
            guard containers[id]?.status != .stopped else { return }
            containers[id]?.status = freeze ? .paused : .running
        }
        return Cocoon_Daemon_V1_Empty()
    }

    func delete(_ r: Cocoon_Daemon_V1_DeleteContainerRequest) throws(SandboxDaemonError) -> Cocoon_Daemon_V1_DeleteContainerResponse {
        let id = r.containerID
        let e = try entry(id)
        if e.status == .running || e.status == .paused {
            guard r.force else {
                throw SandboxDaemonError(.failedPrecondition,
                    "cannot delete container \(id): it is \(e.status.rawValue); stop it first or use --force")
            }
            try? sandbox.signal(containerID: id, signal: SIGKILL, all: true)
            if e.status == .paused { try? sandbox.agent.resume(id, timeout: 10) }
            let deadline = Deadline.after(seconds: 10)
            state.withLock {
                while containers[id]?.status != .stopped {
                    if !state.wait(until: deadline) { break }
                }
            }
        }
        if sandbox.failure == nil {
            do throws(SandboxError) { try sandbox.removeContainer(id, force: true) } catch {
                if error.code != .notFound { throw SandboxDaemonError(error, context: "delete \(id)") }
            }
        }
        let last = state.withLock { () -> Bool in
            containers.removeValue(forKey: id)
            return containers.isEmpty
        }
        logger.info("container deleted", metadata: ["id": "\(id)", "last": "\(last)"])
        return .with { $0.sandboxStopping = last }
    }

    /// Blocks until the last container is deleted, the sandbox fails, or `shouldStop` says so
    /// (checked every second: a signal arrived).
    public func waitUntilFinished(firstContainerWithin: Double = 120, shouldStop: () -> Bool) -> String {
        let firstDeadline = Deadline.after(seconds: firstContainerWithin)
        while true {
            let (done, created) = state.withLock { () -> (Bool, Bool) in
                if !finished { _ = state.wait(until: .after(seconds: 1)) }
                return (finished, everCreated)
            }
            if done { return "its last container was deleted" }
            // The stand-in that should create the first container never came (its create was killed).
            if !created && firstDeadline.hasPassed { return "no container was created in it within \(Int(firstContainerWithin)) s" }
            if let failure = sandbox.failure { return "the sandbox failed: \(failure)" }
            if shouldStop() { return "it was asked to stop" }
        }
    }
}
