import Logging
import Mux
import StatusCodes
import SwiftProtobuf
import SystemCalls
import TTRPC
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The host's connection to one agent: a mux over the transport (virtio-serial or vsock), ttrpc on
/// its control channel, and the same mux for the processes' stdio channels.
/// Nothing the guest sends is trusted: the mux and ttrpc bound every frame and close on violations.
public final class AgentClient: @unchecked Sendable {
    public let mux: Mux
    private let rpc: TTRPCClient

    public init(stream: any ByteStream, logger: Logger) throws(AgentAPIError) {
        do throws(MuxError) {
            mux = try Mux(stream: stream, role: .host, logger: logger)
        } catch {
            throw AgentAPIError(error)
        }
        do {
            let control = try mux.open(AgentChannel.controlChannel)
            rpc = try TTRPCClient(stream: control, logger: logger)
        } catch let e as MuxError {
            mux.close()
            throw AgentAPIError(e)
        } catch let e as TTRPCError {
            mux.close()
            throw AgentAPIError(e)
        } catch {
            mux.close()
            throw AgentAPIError(.internal, "\(error)")
        }
    }

    /// Ends the connection: calls in flight fail with Unavailable, stdio channels end.
    public func close() {
        rpc.close()
        mux.close(reason: "agent connection closed by the host")
    }

    /// One agent call. `timeout` nil waits until the answer or the end of the connection.
    public func call<Response: SwiftProtobuf.Message>(
        _ method: String, _ request: some SwiftProtobuf.Message, returning: Response.Type = Response.self,
        timeout: Double?
    ) throws(AgentAPIError) -> Response {
        do throws(TTRPCError) {
            return try rpc.call(AgentChannel.service, method, request, returning: Response.self, timeout: timeout)
        } catch {
            throw AgentAPIError(error)
        }
    }

    public func health(timeout: Double) throws(AgentAPIError) -> Cocoon_Agent_V1_HealthResponse {
        try call("Health", Cocoon_Agent_V1_HealthRequest(), timeout: timeout)
    }

    public func guestDetails(timeout: Double) throws(AgentAPIError) -> Cocoon_Agent_V1_GuestDetailsResponse {
        try call("GuestDetails", Cocoon_Agent_V1_GuestDetailsRequest(), timeout: timeout)
    }

    /// Asks the agent to power the guest off; it answers first, then reboots (QEMU exits).
    public func shutdown(timeout: Double) throws(AgentAPIError) {
        _ = try call("Shutdown", Cocoon_Agent_V1_ShutdownRequest(), returning: Cocoon_Agent_V1_Empty.self, timeout: timeout)
    }

    /// Gives the guest the pod's interfaces (already attached as virtio-net devices), routes and neighbours.
    public func configureNetwork(_ r: Cocoon_Agent_V1_ConfigureNetworkRequest, timeout: Double) throws(AgentAPIError) {
        _ = try call("ConfigureNetwork", r, returning: Cocoon_Agent_V1_Empty.self, timeout: timeout)
    }

    /// Sets the guest's wall clock (after a host suspend, or at boot when the guest has no RTC).
    public func setTime(unixNanoseconds: Int64, timeout: Double) throws(AgentAPIError) {
        _ = try call("SetTime", Cocoon_Agent_V1_SetTimeRequest.with { $0.unixNanoseconds = unixNanoseconds },
                     returning: Cocoon_Agent_V1_Empty.self, timeout: timeout)
    }
}

/// The host ends of one process's stdio channels, opened before the request that names them.
public struct ProcessChannels: Sendable {
    public let stdin: MuxChannel?
    public let stdout: MuxChannel?
    public let stderr: MuxChannel?
    public let message: Cocoon_Agent_V1_StdioChannels

    /// Resets whatever is still open (a failed create, a torn-down sandbox).
    public func reset(reason: String) {
        [stdin, stdout, stderr].forEach { $0?.reset(reason: reason) }
    }
}

extension AgentClient {
    /// Opens the channels for a process. Names are unique per connection: "<kind>/<container>/<exec>/<n>".
    public func openStdio(containerID: String, execID: String = "", stdin: Bool, stdout: Bool = true, stderr: Bool = true,
                          terminal: Bool) throws(AgentAPIError) -> ProcessChannels {
        let base = "\(containerID)/\(execID.isEmpty ? "init" : execID)/\(UInt32.random(in: 0...UInt32.max))"
        var opened: [MuxChannel] = []
        func open(_ wanted: Bool, _ kind: String) throws(AgentAPIError) -> MuxChannel? {
            guard wanted else { return nil }
            do throws(MuxError) {
                let c = try mux.open("\(kind)/\(base)")
                opened.append(c)
                return c
            } catch {
                opened.forEach { $0.reset(reason: "stdio setup failed") }
                throw AgentAPIError(error)
            }
        }
        let i = try open(stdin, "stdin")
        let o = try open(stdout, "stdout")
        let e = try open(stderr && !terminal, "stderr")
        let message = Cocoon_Agent_V1_StdioChannels.with {
            $0.stdin = i?.name ?? ""
            $0.stdout = o?.name ?? ""
            $0.stderr = e?.name ?? ""
            $0.terminal = terminal
        }
        return ProcessChannels(stdin: i, stdout: o, stderr: e, message: message)
    }

    public func createSandbox(_ r: Cocoon_Agent_V1_CreateSandboxRequest, timeout: Double) throws(AgentAPIError) {
        _ = try call("CreateSandbox", r, returning: Cocoon_Agent_V1_Empty.self, timeout: timeout)
    }

    public func destroySandbox(timeout: Double) throws(AgentAPIError) {
        _ = try call("DestroySandbox", Cocoon_Agent_V1_DestroySandboxRequest(), returning: Cocoon_Agent_V1_Empty.self, timeout: timeout)
    }

    public func createContainer(_ r: Cocoon_Agent_V1_CreateContainerRequest, timeout: Double) throws(AgentAPIError) -> Int32 {
        try call("CreateContainer", r, returning: Cocoon_Agent_V1_CreateContainerResponse.self, timeout: timeout).pid
    }

    public func startContainer(_ id: String, timeout: Double) throws(AgentAPIError) {
        _ = try call("StartContainer", Cocoon_Agent_V1_ContainerRequest.with { $0.containerID = id },
                     returning: Cocoon_Agent_V1_Empty.self, timeout: timeout)
    }

    public func removeContainer(_ id: String, force: Bool, timeout: Double) throws(AgentAPIError) {
        _ = try call("RemoveContainer", Cocoon_Agent_V1_RemoveContainerRequest.with { $0.containerID = id; $0.force = force },
                     returning: Cocoon_Agent_V1_Empty.self, timeout: timeout)
    }

    public func execProcess(_ r: Cocoon_Agent_V1_ExecProcessRequest, timeout: Double) throws(AgentAPIError) -> Int32 {
        try call("ExecProcess", r, returning: Cocoon_Agent_V1_ExecProcessResponse.self, timeout: timeout).pid
    }

    public func signal(_ id: String, execID: String = "", signal: Int32, all: Bool = false, timeout: Double) throws(AgentAPIError) {
        _ = try call("SignalProcess", Cocoon_Agent_V1_SignalProcessRequest.with {
            $0.containerID = id
            $0.execID = execID
            $0.signal = UInt32(clamping: signal)
            $0.all = all
        }, returning: Cocoon_Agent_V1_Empty.self, timeout: timeout)
    }

    /// The exit status once the process ended and its output was sent; nil timeout waits as long as it takes.
    public func wait(_ id: String, execID: String = "", timeout: Double?) throws(AgentAPIError) -> Int32 {
        try call("WaitProcess", Cocoon_Agent_V1_ProcessRequest.with { $0.containerID = id; $0.execID = execID },
                 returning: Cocoon_Agent_V1_WaitProcessResponse.self, timeout: timeout).exitStatus
    }

    public func resizeTTY(_ id: String, execID: String = "", rows: UInt32, columns: UInt32, timeout: Double) throws(AgentAPIError) {
        _ = try call("ResizeTTY", Cocoon_Agent_V1_ResizeTTYRequest.with {
            $0.containerID = id
            $0.execID = execID
            $0.rows = rows
            $0.columns = columns
        }, returning: Cocoon_Agent_V1_Empty.self, timeout: timeout)
    }

    public func closeStdin(_ id: String, execID: String = "", timeout: Double) throws(AgentAPIError) {
        _ = try call("CloseStdin", Cocoon_Agent_V1_ProcessRequest.with { $0.containerID = id; $0.execID = execID },
                     returning: Cocoon_Agent_V1_Empty.self, timeout: timeout)
    }

    public func listProcesses(_ id: String, timeout: Double) throws(AgentAPIError) -> [Int32] {
        try call("ListProcesses", Cocoon_Agent_V1_ContainerRequest.with { $0.containerID = id },
                 returning: Cocoon_Agent_V1_ListProcessesResponse.self, timeout: timeout).pids
    }

    public func stats(_ id: String, timeout: Double) throws(AgentAPIError) -> Cocoon_Agent_V1_StatsResponse {
        try call("Stats", Cocoon_Agent_V1_ContainerRequest.with { $0.containerID = id }, timeout: timeout)
    }

    public func pause(_ id: String, timeout: Double) throws(AgentAPIError) {
        _ = try call("PauseContainer", Cocoon_Agent_V1_ContainerRequest.with { $0.containerID = id },
                     returning: Cocoon_Agent_V1_Empty.self, timeout: timeout)
    }

    public func resume(_ id: String, timeout: Double) throws(AgentAPIError) {
        _ = try call("ResumeContainer", Cocoon_Agent_V1_ContainerRequest.with { $0.containerID = id },
                     returning: Cocoon_Agent_V1_Empty.self, timeout: timeout)
    }

    public func update(_ id: String, resourcesJSON: [UInt8], timeout: Double) throws(AgentAPIError) {
        _ = try call("UpdateContainer", Cocoon_Agent_V1_UpdateContainerRequest.with {
            $0.containerID = id
            $0.resourcesJson = Data(resourcesJSON)
        }, returning: Cocoon_Agent_V1_Empty.self, timeout: timeout)
    }
}
