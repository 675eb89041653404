import StatusCodes

/// The shim's one error type. Its code crosses ttrpc unchanged, and containerd maps it to its own
/// errdefs (NotFound, AlreadyExists, FailedPrecondition, ...).
public struct ShimError: CocoonError {
    public let code: StatusCode
    public let message: String

    public init(_ code: StatusCode, _ message: String) {
        self.code = code
        self.message = message
    }
}
