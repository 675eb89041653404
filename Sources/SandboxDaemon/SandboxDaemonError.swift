import StatusCodes

/// Errors of the per-sandbox daemon, its clients and the stand-in processes.
public struct SandboxDaemonError: CocoonError {
    public let code: StatusCode
    public let message: String

    public init(_ code: StatusCode, _ message: String) {
        self.code = code
        self.message = message
    }

    init(_ error: some CocoonError, context: String) {
        self.init(error.code, context.isEmpty ? error.message : "\(context): \(error.message)")
    }
}
