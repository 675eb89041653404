import StatusCodes

public struct SandboxError: CocoonError {
    public let code: StatusCode
    public let message: String
    public let consoleTail: [String]

    public init(_ code: StatusCode, _ message: String, consoleTail: [String] = []) {
        self.code = code
        self.message = message
        self.consoleTail = consoleTail
    }

    public var description: String {
        guard !consoleTail.isEmpty else { return message }
        return message + "\nlast console lines:\n" + consoleTail.map { "  | " + $0 }.joined(separator: "\n")
    }
}
