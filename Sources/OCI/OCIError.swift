import StatusCodes

/// A problem with a bundle: the file, the JSON path of the field, and what would be valid.
public struct OCIError: CocoonError, Equatable {
    public let code: StatusCode
    public let file: String
    /// e.g. `process.args`, `linux.namespaces[2].type`; empty for the document as a whole.
    public let path: String
    public let problem: String

    public init(_ code: StatusCode = .invalidArgument, file: String, path: String, _ problem: String) {
        self.code = code
        self.file = file
        self.path = path
        self.problem = problem
    }

    public var message: String { path.isEmpty ? "\(file): \(problem)" : "\(file): \(path): \(problem)" }
}
