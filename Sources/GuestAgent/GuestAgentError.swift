import StatusCodes

/// Why the agent refused or failed a request; the code crosses ttrpc as the gRPC status.
public struct GuestAgentError: CocoonError, Equatable {
    public let code: StatusCode
    public let message: String

    public init(_ code: StatusCode, _ message: String) {
        self.code = code
        self.message = message
    }
}
