import StatusCodes

public struct SystemdError: CocoonError, Equatable {
    public let code: StatusCode
    public let message: String
    public init(_ code: StatusCode = .internal, _ message: String) {
        self.code = code
        self.message = message
    }
}
