import StatusCodes

/// A container operation that failed; `step` names what was being done (e.g. "mount /proc").
public struct LinuxContainerError: CocoonError, Equatable, Codable {
    public let code: StatusCode
    public let step: String
    public let reason: String

    public init(_ code: StatusCode = .internal, step: String, _ reason: String) {
        self.code = code
        self.step = step
        self.reason = reason
    }

    public var message: String { step.isEmpty ? reason : "\(step): \(reason)" }
}
