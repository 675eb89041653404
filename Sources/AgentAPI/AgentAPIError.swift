import StatusCodes

public enum AgentAPIError: CocoonError, Equatable {
    case oversized(Int)
    case malformed(String)
    case closed
    case timedOut(String)
    case transport(String)
    case remote(code: StatusCode, message: String)

    public var code: StatusCode {
        switch self {
        case .oversized: .resourceExhausted
        case .malformed: .invalidArgument
        case .closed, .transport: .unavailable
        case .timedOut: .deadlineExceeded
        case .remote(let code, _): code
        }
    }

    public var message: String {
        switch self {
        case .oversized(let n): "agent message of \(n) bytes exceeds the \(LineFramer.maxLineBytes)-byte limit"
        case .malformed(let what): "malformed agent message: \(what)"
        case .closed: "the agent channel was closed"
        case .timedOut(let what): "the agent did not answer \(what) in time"
        case .transport(let what): "agent channel: \(what)"
        case .remote(let code, let message): "agent: \(code): \(message)"
        }
    }
}
