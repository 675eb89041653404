import AgentAPI
import Logging
import Mux
import Sandbox
import SwiftProtobuf
import SystemCalls
import TTRPC

/// A client of a per-sandbox daemon: one connection to its control socket carrying the daemon's
/// API and, on the same mux, the agent API and stdio channels (spliced to the guest).
public final class DaemonConnection: @unchecked Sendable {
    public let agent: AgentClient
    private let rpc: TTRPCClient
    private let channel: MuxChannel
    public let controlSocket: String

    public init(controlSocket: String, logger: Logger) throws(SandboxDaemonError) {
        self.controlSocket = controlSocket
        do throws(SandboxError) {
            agent = try Sandbox.connectControl(socket: controlSocket, logger: logger)
        } catch {
            throw SandboxDaemonError(error, context: "")
        }
        do {
            channel = try agent.mux.open(DaemonService.channelName)
            rpc = try TTRPCClient(stream: channel, logger: logger)
        } catch {
            agent.close()
            throw SandboxDaemonError(.unavailable, "the sandbox daemon at \(controlSocket) did not take a connection: \(error)")
        }
    }

    public func close() {
        // End of file first, and a moment for the daemon to end its side, so that it sees a clean end
        // rather than a reset (which it logs as a warning).
        channel.closeWrite()
        let deadline = Deadline.after(seconds: 0.5)
        while !rpc.isClosed && !deadline.hasPassed { sleep(seconds: 0.005) }
        rpc.close()
        agent.close()
    }

    func call<Response: SwiftProtobuf.Message>(_ method: String, _ request: some SwiftProtobuf.Message,
                                               timeout: Double = Sandbox.requestTimeout + 15) throws(SandboxDaemonError) -> Response {
        do throws(TTRPCError) {
            return try rpc.call(DaemonService.serviceName, method, request, returning: Response.self, timeout: timeout)
        } catch {
            throw SandboxDaemonError(error.code, error.message)
        }
    }

    public func createContainer(id: String, bundle: String, channels: Cocoon_Agent_V1_StdioChannels) throws(SandboxDaemonError) -> Int32 {
        let r: Cocoon_Daemon_V1_CreateContainerResponse = try call("CreateContainer", Cocoon_Daemon_V1_CreateContainerRequest.with {
            $0.containerID = id
            $0.bundle = bundle
            $0.stdinChannel = channels.stdin
            $0.stdoutChannel = channels.stdout
            $0.stderrChannel = channels.stderr
            $0.terminal = channels.terminal
        })
        return r.guestPid
    }

    public func start(_ id: String) throws(SandboxDaemonError) {
        let _: Cocoon_Daemon_V1_Empty = try call("StartContainer", Cocoon_Daemon_V1_ContainerRequest.with { $0.containerID = id })
    }

    public func state(_ id: String) throws(SandboxDaemonError) -> Cocoon_Daemon_V1_ContainerStateResponse {
        try call("ContainerState", Cocoon_Daemon_V1_ContainerRequest.with { $0.containerID = id }, timeout: 15)
    }

    public func pause(_ id: String) throws(SandboxDaemonError) {
        let _: Cocoon_Daemon_V1_Empty = try call("PauseContainer", Cocoon_Daemon_V1_ContainerRequest.with { $0.containerID = id })
    }

    public func resume(_ id: String) throws(SandboxDaemonError) {
        let _: Cocoon_Daemon_V1_Empty = try call("ResumeContainer", Cocoon_Daemon_V1_ContainerRequest.with { $0.containerID = id })
    }

    /// True when the sandbox stops because this was its last container.
    public func delete(_ id: String, force: Bool) throws(SandboxDaemonError) -> Bool {
        let r: Cocoon_Daemon_V1_DeleteContainerResponse = try call("DeleteContainer", Cocoon_Daemon_V1_DeleteContainerRequest.with {
            $0.containerID = id
            $0.force = force
        })
        return r.sandboxStopping
    }
}
