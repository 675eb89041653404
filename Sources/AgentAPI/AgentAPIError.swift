import Mux
import StatusCodes
import TTRPC

/// A failed agent call: the agent's own status, or the channel's (Unavailable, DeadlineExceeded, ...).
public struct AgentAPIError: CocoonError, Equatable {
    public let code: StatusCode
    public let message: String

    public init(_ code: StatusCode, _ message: String) {
        self.code = code
        self.message = message
    }

    init(_ e: TTRPCError) { self.init(e.code, "agent: \(e.message)") }
    init(_ e: MuxError) { self.init(e.code, "agent channel: \(e.message)") }
}
