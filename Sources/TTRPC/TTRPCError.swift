import StatusCodes

/// A ttrpc failure: a status the peer sent back, or one raised locally (framing, transport, deadline).
public struct TTRPCError: CocoonError, Equatable {
    public let code: StatusCode
    public let message: String

    public init(_ code: StatusCode, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The status to put on the wire for any error a handler throws: its own code when it has one.
    static func status(for error: any Error) -> TTRPCError {
        if let e = error as? TTRPCError { return e }
        if let e = error as? any CocoonError { return TTRPCError(e.code, e.message) }
        return TTRPCError(.unknown, "\(error)")
    }
}
