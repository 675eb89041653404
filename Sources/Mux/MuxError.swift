import StatusCodes

/// A mux failure: the whole connection is gone (Unavailable), one channel was reset (Aborted), or a
/// local misuse (InvalidArgument, ResourceExhausted, DeadlineExceeded).
public struct MuxError: CocoonError, Equatable {
    public let code: StatusCode
    public let message: String

    public init(_ code: StatusCode, _ message: String) {
        self.code = code
        self.message = message
    }
}
