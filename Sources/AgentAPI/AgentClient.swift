import Logging
import Mux
import StatusCodes
import SwiftProtobuf
import SystemCalls
import TTRPC

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

    /// Sets the guest's wall clock (after a host suspend, or at boot when the guest has no RTC).
    public func setTime(unixNanoseconds: Int64, timeout: Double) throws(AgentAPIError) {
        _ = try call("SetTime", Cocoon_Agent_V1_SetTimeRequest.with { $0.unixNanoseconds = unixNanoseconds },
                     returning: Cocoon_Agent_V1_Empty.self, timeout: timeout)
    }
}
