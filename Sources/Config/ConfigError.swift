import StatusCodes

/// A configuration problem, always naming the file and, where there is one, the key.
public struct ConfigError: CocoonError, Equatable {
    public let file: String
    public let key: String?
    public let code: StatusCode
    public let problem: String

    public init(file: String, key: String?, code: StatusCode = .invalidArgument, problem: String) {
        self.file = file
        self.key = key
        self.code = code
        self.problem = problem
    }

    public var message: String {
        if let key { return "\(file): \(key): \(problem)" }
        return "\(file): \(problem)"
    }
}
